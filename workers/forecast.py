"""Forecast jobs: win models, deals' stored probabilities and nightly snapshots."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from arq.worker import Function, func

from app.deals.queries import list_pipelines
from app.forecast.queue import RESCORE_DEAL_FUNCTION
from app.forecast.scores import (
    RETRAIN_AFTER,
    closed_since_training,
    rescore_deal,
    rescore_open_deals,
)
from app.forecast.service import take_snapshots, train_pipeline

logger = logging.getLogger(__name__)


async def rescore_deal_task(ctx: dict[str, Any], deal_id: int) -> float | None:
    """Rescore one deal; returns its probability, None when closed or missing."""
    chance = await rescore_deal(deal_id)
    return chance.probability if chance else None


# keep_result=0 frees the deal's job id as soon as the job ends, so the
# next change to the deal can queue a new rescoring (app.forecast.queue).
rescore_deal_job: Function = func(
    rescore_deal_task, name=RESCORE_DEAL_FUNCTION, keep_result=0, max_tries=3
)


async def train_win_models(ctx: dict[str, Any]) -> dict[str, int]:
    """Train the win model of every pipeline; return how many got one."""
    today = dt.datetime.now(dt.UTC).date()
    trained = failed = 0
    pipelines = await list_pipelines()
    for pipeline in pipelines:
        try:
            model = await train_pipeline(pipeline["id"], today)
        except Exception:
            # One pipeline's failure leaves the others' models to train.
            logger.exception(
                "win model training failed job_id=%s pipeline_id=%s",
                ctx.get("job_id"),
                pipeline["id"],
            )
            failed += 1
            continue
        trained += int(model is not None)
    return {"pipelines": len(pipelines), "trained": trained, "failed": failed}


async def forecast_nightly(ctx: dict[str, Any]) -> dict[str, int]:
    """Train the models, rescore every open deal, then record today's snapshot.

    The rescoring runs even when no model changed, because a deal's age and
    days since activity move its probability without any edit.
    """
    counts = await train_win_models(ctx)
    counts["rescored"] = await rescore_open_deals(job_id=ctx.get("job_id"))
    counts["snapshots"] = await take_snapshots(dt.datetime.now(dt.UTC).date())
    logger.info(
        "forecast nightly done job_id=%s trained=%d failed=%d rescored=%d snapshots=%d",
        ctx.get("job_id"),
        counts["trained"],
        counts["failed"],
        counts["rescored"],
        counts["snapshots"],
    )
    return counts


async def retrain_win_models_when_due(ctx: dict[str, Any]) -> dict[str, int]:
    """Retrain each pipeline whose deals closed since its model reached
    ``RETRAIN_AFTER``, then rescore that pipeline's open deals.

    NOTE: a pipeline whose closed deals pass the threshold but still fall
    short of a model's minimum history is tried again on every run, at the
    cost of loading its deals.
    """
    today = dt.datetime.now(dt.UTC).date()
    trained = failed = 0
    pipelines = await list_pipelines()
    for pipeline in pipelines:
        closed = await closed_since_training(pipeline["id"])
        if closed < RETRAIN_AFTER:
            continue
        logger.info(
            "retraining win model, deals closed since last model pipeline_id=%s "
            "count=%d job_id=%s",
            pipeline["id"],
            closed,
            ctx.get("job_id"),
        )
        try:
            model = await train_pipeline(pipeline["id"], today)
        except Exception:
            logger.exception(
                "win model retraining failed job_id=%s pipeline_id=%s",
                ctx.get("job_id"),
                pipeline["id"],
            )
            failed += 1
            continue
        trained += 1
        if model is not None:
            await rescore_open_deals(pipeline["id"], ctx.get("job_id"))
    return {"pipelines": len(pipelines), "trained": trained, "failed": failed}
