"""Queueing a deal's rescoring, at most one waiting job per deal, the way
leads are queued (``app.scoring.queue``)."""

from __future__ import annotations

import os

from app.scoring.queue import enqueue_once, job_ids

RESCORE_DEAL_FUNCTION = "rescore_deal"
# Changes within this many seconds of the first share one rescoring, so a
# burst of edits to one deal is scored once.
RESCORE_DELAY = float(os.environ.get("CRM_DEAL_RESCORE_DELAY", "0.5"))


def rescore_job_ids(deal_id: int) -> tuple[str, str]:
    return job_ids("deal", deal_id)


async def enqueue_deal_rescore(deal_id: int) -> str | None:
    """Queue the deal's rescoring; return the job id, or None when one waits."""
    return await enqueue_once(RESCORE_DEAL_FUNCTION, "deal", deal_id, RESCORE_DELAY)
