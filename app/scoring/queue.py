"""Queueing a record's rescoring, at most one waiting job per record.

arq drops a job whose id is already queued or running. A record's
rescoring has one id, so changes that arrive while it waits share it. A
change that arrives while it runs would be dropped, because the running
job read the record before, so it goes to a second id, the id of the next
run. Leads and deals (``app.forecast.queue``) are queued this way.
"""

from __future__ import annotations

import logging

from arq.constants import in_progress_key_prefix

logger = logging.getLogger(__name__)

RESCORE_FUNCTION = "rescore_lead"
# Changes within this many seconds of each other share one rescoring.
RESCORE_DELAY = 0.05


def job_ids(record_type: str, record_id: int) -> tuple[str, str]:
    """Return the arq job ids of a record's rescoring and of the run after
    it, before the prefix."""
    first = f"rescore:{record_type}:{record_id}"
    return first, f"{first}:next"


async def enqueue_once(
    function: str, record_type: str, record_id: int, delay: float
) -> str | None:
    """Queue ``function`` for the record; return the job id, or None when one
    already waits.

    A failure is logged, not raised, because the change it follows has
    committed; the nightly jobs rescore every open lead and deal.
    """
    from app.workflows.jobs import get_queue

    try:
        queue = await get_queue()
        first, following = job_ids(record_type, record_id)
        job = await queue.enqueue_job(
            function, record_id, _job_id=first, _defer_by=delay
        )
        if job is None:
            running = in_progress_key_prefix + queue.job_id_prefix + first
            if await queue.exists(running):
                job = await queue.enqueue_job(
                    function, record_id, _job_id=following, _defer_by=delay
                )
    except Exception:
        logger.exception(
            "queueing rescoring failed record_type=%s record_id=%s",
            record_type,
            record_id,
        )
        return None
    if job is None:
        logger.debug(
            "rescoring already queued record_type=%s record_id=%s",
            record_type,
            record_id,
        )
        return None
    logger.debug(
        "rescoring queued record_type=%s record_id=%s job_id=%s",
        record_type,
        record_id,
        job.job_id,
    )
    return str(job.job_id)


def rescore_job_ids(lead_id: int) -> tuple[str, str]:
    return job_ids("lead", lead_id)


async def enqueue_rescore(lead_id: int) -> str | None:
    """Queue the lead's rescoring; return the job id, or None when one waits."""
    return await enqueue_once(RESCORE_FUNCTION, "lead", lead_id, RESCORE_DELAY)
