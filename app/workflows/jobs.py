"""The arq jobs of workflow rules: timers, their planning, task reminders
and rescoring.

Side effects of rules (webhooks, notifications, mail) are written to the
outbox in the transaction that ran the rule, and delivered by the jobs in
``app.webhooks.jobs``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from arq.worker import Function, func

from app.workflows.planning import PLAN_FUNCTION
from app.workflows.schema import has_score
from app.workflows.timers import fire_due_timers

logger = logging.getLogger(__name__)

# The event kind of a toast on a user's pages (app.workflows.live).
NOTIFICATION = "workflow.notified"

_queue: Any = None
_queue_lock = asyncio.Lock()


async def get_queue() -> Any:
    """Return this process's arq connection, opened on first use."""
    global _queue
    async with _queue_lock:
        if _queue is None:
            from workers.connection import open_queue

            _queue = await open_queue(
                os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
                os.environ.get("REDIS_PREFIX", "crm:"),
            )
    return _queue


async def close_queue() -> None:
    global _queue
    if _queue is not None:
        await _queue.aclose()
        _queue = None


async def rescore(ctx: dict[str, Any], record_type: str, record_id: int) -> None:
    """Queue the record's rescoring, for record types that have a score."""
    from app.scoring.queue import enqueue_rescore

    if not has_score(record_type):
        logger.info(
            "rescore requested for a record without a score %s_id=%s job_id=%s",
            record_type,
            record_id,
            ctx.get("job_id"),
        )
        return
    job_id = await enqueue_rescore(record_id)
    logger.info(
        "rescore requested lead_id=%s rescore_job_id=%s job_id=%s",
        record_id,
        job_id,
        ctx.get("job_id"),
    )


async def run_due_timers(ctx: dict[str, Any]) -> int:
    """Fire due rule timers, then remind the assignees of due tasks."""
    from app.tasks.service import send_due_reminders
    from app.workflows.clock import now

    fired = await fire_due_timers()
    if fired:
        logger.info("workflow timers fired count=%d", fired)
    reminded = await send_due_reminders(now())
    return fired + reminded


async def plan_timers(ctx: dict[str, Any], rule_id: int, generation: int) -> Any:
    """Set a time-based rule's timers for existing records (app.workflows.planning)."""
    from app.workflows.planning import run_plan

    return await run_plan(rule_id, generation, job_id=ctx.get("job_id"))


async def resume_timer_plans(ctx: dict[str, Any]) -> int:
    """Queue again the planning runs that stopped reporting; return how many.

    The job id names the run and the time of its last report, so one stall
    is queued once even when several workers look at it. A second job for a
    run whose first is only slow does no harm, because each batch takes its
    place from the run's row under a lock.
    """
    from app.workflows.planning import enqueue_plan, stalled_plans

    queued = 0
    for plan in await stalled_plans():
        reported = str(int(plan["updated_at"].timestamp()))
        job_id = await enqueue_plan(plan["rule"], plan["generation"], reported)
        if job_id is None:
            continue
        queued += 1
        logger.warning(
            "timer planning queued again after no progress rule_id=%s "
            "generation=%s job_id=%s",
            plan["rule"],
            plan["generation"],
            job_id,
        )
    return queued


rescore_job: Function = func(rescore, name="rescore")
# keep_result=0 lets a stalled run's id be queued again at once.
plan_timers_job: Function = func(plan_timers, name=PLAN_FUNCTION, keep_result=0)
