"""The scoring jobs: rescoring one lead or every open lead, and training the model."""

from __future__ import annotations

import logging
from typing import Any

from arq.worker import Function, func

from app.scoring.queue import RESCORE_FUNCTION
from app.scoring.service import rescore_lead
from app.scoring.training import (
    RETRAIN_AFTER,
    open_lead_ids,
    outcomes_since_training,
    train_and_store,
)

logger = logging.getLogger(__name__)

RESCORE_BATCH = 500


async def rescore_lead_task(ctx: dict[str, Any], lead_id: int) -> int | None:
    """Rescore one lead; returns its combined score."""
    score = await rescore_lead(lead_id)
    return score.score if score else None


async def rescore_open_leads(job_id: str | None = None) -> int:
    """Rescore every lead that is not closed, in id order; returns how many.

    Leads are read ``RESCORE_BATCH`` at a time, and each batch logs the count
    so far. A lead whose rescoring fails is logged and skipped, so one bad
    record does not leave the leads after it with stale scores.
    """
    count = failed = 0
    after = 0
    while True:
        ids = await open_lead_ids(after, RESCORE_BATCH)
        for lead_id in ids:
            try:
                await rescore_lead(lead_id)
            except Exception:
                logger.exception(
                    "lead rescoring failed lead_id=%s job_id=%s", lead_id, job_id
                )
                failed += 1
        count += len(ids)
        logger.info(
            "open leads rescoring progress rescored=%d failed=%d last_lead_id=%s "
            "job_id=%s",
            count - failed,
            failed,
            ids[-1] if ids else None,
            job_id,
        )
        if len(ids) < RESCORE_BATCH:
            return count - failed
        after = ids[-1]


async def train_scoring_model(ctx: dict[str, Any]) -> int | None:
    """Train a model on the closed leads, then rescore the open ones.

    Runs nightly, and from ``retrain_when_due`` once enough leads closed.
    Returns the new model's version, or None when too few leads are closed.
    """
    version = await train_and_store()
    if version is not None:
        rescored = await rescore_open_leads(ctx.get("job_id"))
        logger.info(
            "open leads rescored version=%s count=%d job_id=%s",
            version,
            rescored,
            ctx.get("job_id"),
        )
    return version


async def retrain_when_due(ctx: dict[str, Any]) -> int | None:
    """Train now when ``RETRAIN_AFTER`` leads closed since the last training."""
    closed = await outcomes_since_training()
    if closed < RETRAIN_AFTER:
        return None
    logger.info("retraining, leads closed since last model count=%d", closed)
    return await train_scoring_model(ctx)


# keep_result=0 frees the lead's job id as soon as the job ends, so the
# next change to the lead can queue a new rescoring (app.scoring.queue).
rescore_lead_job: Function = func(
    rescore_lead_task, name=RESCORE_FUNCTION, keep_result=0, max_tries=3
)
train_scoring_model_job: Function = func(train_scoring_model, keep_result=0)


async def rescore_open_leads_task(ctx: dict[str, Any]) -> int:
    """Rescore every open lead, as after a change of the scoring rules."""
    count = await rescore_open_leads(ctx.get("job_id"))
    logger.info("open leads rescored count=%d job_id=%s", count, ctx.get("job_id"))
    return count


async def rescore_open_leads_nightly(ctx: dict[str, Any]) -> int:
    """Rescore every open lead, so decaying rule points fall without any edit.

    Runs whether or not a model is trained that night: a lead's stored score
    is only recomputed on a change, a new model or this job.
    """
    logger.info("nightly lead rescoring started job_id=%s", ctx.get("job_id"))
    count = await rescore_open_leads(ctx.get("job_id"))
    logger.info(
        "nightly lead rescoring done count=%d job_id=%s", count, ctx.get("job_id")
    )
    return count


rescore_open_leads_job: Function = func(
    rescore_open_leads_task, name="rescore_open_leads", keep_result=0
)
