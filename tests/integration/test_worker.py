"""Jobs run by a real arq worker process."""

from __future__ import annotations

import asyncio
import os
import uuid

from arq import create_pool

from app.events.service import change_set
from app.events.tables import Event
from tests.servers import worker_process
from workers.connection import queue_name, redis_settings


async def test_worker_prunes_events_past_retention() -> None:
    stream = f"tickets-{uuid.uuid4().hex[:8]}"
    async with change_set() as changes:
        changes.add("ticket.updated", "ticket", 1, [stream])
        changes.add("ticket.updated", "ticket", 2, [stream])
    old, recent = (event.id for event in changes.events)
    await Event.raw(
        "UPDATE event SET created_at = now() - interval '9 days' WHERE id = {}", old
    )

    pool = await create_pool(
        redis_settings(os.environ["REDIS_URL"]),
        default_queue_name=queue_name(os.environ["REDIS_PREFIX"]),
    )
    with worker_process({"EVENT_RETENTION_DAYS": "7"}):
        job = await pool.enqueue_job("prune_old_events")
        deleted = await job.result(timeout=30)
    await pool.aclose()

    assert deleted >= 1
    assert not await Event.exists().where(Event.id == old)
    assert await Event.exists().where(Event.id == recent)
    await asyncio.sleep(0)
