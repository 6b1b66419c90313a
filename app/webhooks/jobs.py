"""The arq jobs that deliver outbox messages.

``deliver_outbox`` is queued right after a change that wrote messages
commits, so they usually go out at once. ``relay_outbox`` runs every few
seconds and when a worker starts. It sends whatever is due: retries,
messages whose queueing failed, and messages whose worker died mid-attempt.
The outbox rows, not arq, are the record of what is left to send, so a lost
or repeated job costs only a query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arq.worker import Function, func

from app.webhooks.delivery import deliver_due, next_due_in

logger = logging.getLogger(__name__)

# Queued jobs take one of this many ids, so a burst of changes queues at
# most this many deliverers. arq drops a job whose id is already queued.
KICK_SLOTS = 4
# Messages one run attempts before it ends and leaves the rest to the next.
BATCH = 200
# A run waits for a retry due within this many seconds (the relay's period),
# but runs no longer than RUN_SECONDS in all.
WAIT_SECONDS = 3.0
RUN_SECONDS = 30.0


async def kick_delivery(message_count: int, first_slot: int) -> None:
    """Queue a delivery job after commit; a failure only delays delivery,
    because the relay picks the messages up."""
    from app.workflows.jobs import get_queue

    try:
        queue = await get_queue()
        await queue.enqueue_job(
            "deliver_outbox", _job_id=f"outbox:kick:{first_slot % KICK_SLOTS}"
        )
    except Exception as error:
        logger.warning(
            "queueing outbox delivery failed, the relay will send count=%d error=%s",
            message_count,
            error,
        )


async def deliver_outbox(ctx: dict[str, Any]) -> int:
    """Attempt the due messages, and wait for those due within
    ``WAIT_SECONDS``, for at most ``RUN_SECONDS``; return how many it tried."""
    attempted = 0
    deadline = time.monotonic() + RUN_SECONDS
    while attempted < BATCH:
        attempted += await deliver_due(BATCH - attempted, ctx.get("job_id"))
        wait = await next_due_in()
        if wait is None or wait > WAIT_SECONDS:
            break
        if time.monotonic() + wait > deadline:
            break
        # Retries due before the next relay run go out on time.
        await asyncio.sleep(max(wait, 0.05))
    if attempted:
        logger.info(
            "outbox delivery attempted=%d job_id=%s", attempted, ctx.get("job_id")
        )
    return attempted


async def relay_outbox(ctx: dict[str, Any]) -> int:
    return await deliver_outbox(ctx)


deliver_outbox_job: Function = func(
    deliver_outbox, name="deliver_outbox", keep_result=0
)
