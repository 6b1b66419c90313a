"""Storing each open deal's win probability and factors, and when to retrain.

A deal's probability is computed by ``app.deals.queries.win_chance`` and
kept on the deal (``win_probability``, ``win_chance``, ``win_scored_at``),
so that pages read it instead of computing it on every push. A change to
the stored figure goes out on the deal's streams as a "deal.scored" event.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import msgspec

from app.deals import queries
from app.deals.service import deal_topics
from app.deals.tables import Deal
from app.events.service import change_set
from app.forecast.probability import DealChance

logger = logging.getLogger(__name__)

# Retrain a pipeline's model before the nightly run once this many of its
# deals closed since its model was trained.
RETRAIN_AFTER = int(os.environ.get("CRM_FORECAST_RETRAIN_AFTER", "100"))
RESCORE_BATCH = 500


def decode_chance(value: Any) -> dict[str, Any] | None:
    """Return a JSONB column's value; Piccolo returns it as text."""
    if isinstance(value, str):
        decoded: dict[str, Any] | None = msgspec.json.decode(value) if value else None
        return decoded
    return value if isinstance(value, dict) else None


async def rescore_deal(deal_id: int, today: dt.date | None = None) -> DealChance | None:
    """Compute the deal's probability and store it when it changed.

    Returns None for a closed deal, whose stored figure is cleared, and for
    a deal that does not exist. The row's version does not move, because a
    probability is not an edit anyone could conflict with.
    """
    stored = (
        await Deal.select(Deal.pipeline, Deal.win_probability, Deal.win_chance)
        .where(Deal.id == deal_id)
        .first()
    )
    if stored is None:
        logger.info("deal rescoring skipped, deal not found deal_id=%s", deal_id)
        return None
    chance = await queries.win_chance(deal_id, today)
    new = chance.to_json() if chance is not None else None
    old = decode_chance(stored["win_chance"])
    now = dt.datetime.now(dt.UTC)
    if new == old:
        await Deal.update({Deal.win_scored_at: now}).where(Deal.id == deal_id)
        return chance

    probability = chance.probability if chance is not None else None
    async with change_set(None) as changes:
        await Deal.update(
            {
                Deal.win_probability: probability,
                Deal.win_chance: None
                if new is None
                else msgspec.json.encode(new).decode(),
                Deal.win_scored_at: now,
            }
        ).where(Deal.id == deal_id)
        changes.add(
            "deal.scored",
            "deal",
            deal_id,
            deal_topics({"id": deal_id, "pipeline": stored["pipeline"]}),
            {"win_probability": [stored["win_probability"], probability]},
        )
    logger.info(
        "deal scored deal_id=%s probability=%s from_model=%s",
        deal_id,
        None if probability is None else round(probability, 4),
        chance is not None and chance.from_model,
    )
    return chance


async def stored_chance(deal_id: int) -> DealChance | None:
    """Return the deal's stored probability and factors.

    A deal that is open but not scored yet (its rescoring is still queued)
    gets its probability computed now. Closed deals and missing ones get
    None.
    """
    rows = await Deal.raw(
        "SELECT d.win_chance, s.kind FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE d.id = {}",
        deal_id,
    )
    if not rows or rows[0]["kind"] != "open":
        return None
    data = decode_chance(rows[0]["win_chance"])
    if data is None:
        return await queries.win_chance(deal_id)
    return DealChance.from_json(data)


async def open_deal_ids(
    after: int, limit: int, pipeline_id: int | None = None
) -> list[int]:
    rows = await Deal.raw(
        "SELECT d.id FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE s.kind = 'open' AND d.id > {} AND ({}::int IS NULL OR d.pipeline = {}) "
        "ORDER BY d.id LIMIT {}",
        after,
        pipeline_id,
        pipeline_id,
        limit,
    )
    return [row["id"] for row in rows]


async def rescore_open_deals(
    pipeline_id: int | None = None, job_id: str | None = None
) -> int:
    """Rescore every open deal (of one pipeline when given); return how many.

    Deals are read ``RESCORE_BATCH`` at a time in id order, and each batch
    logs the count so far. A deal whose rescoring raises is logged and
    skipped.
    """
    count = failed = 0
    after = 0
    while True:
        ids = await open_deal_ids(after, RESCORE_BATCH, pipeline_id)
        for deal_id in ids:
            try:
                await rescore_deal(deal_id)
            except Exception:
                logger.exception(
                    "deal rescoring failed deal_id=%s job_id=%s", deal_id, job_id
                )
                failed += 1
        count += len(ids)
        logger.info(
            "open deals rescoring progress rescored=%d failed=%d pipeline_id=%s "
            "job_id=%s",
            count - failed,
            failed,
            pipeline_id,
            job_id,
        )
        if len(ids) < RESCORE_BATCH:
            return count - failed
        after = ids[-1]


async def closed_since_training(pipeline_id: int) -> int:
    """Return how many of the pipeline's deals closed since its model was trained.

    A pipeline without a model counts every closed deal.
    """
    rows = await Deal.raw(
        "SELECT count(*) AS n FROM deal d JOIN stage s ON s.id = d.stage "
        "WHERE d.pipeline = {} AND s.kind IN ('won', 'lost') "
        "AND d.stage_entered_at > coalesce((SELECT trained_at FROM forecast_model "
        "WHERE pipeline = {}), '-infinity')",
        pipeline_id,
        pipeline_id,
    )
    return int(rows[0]["n"])
