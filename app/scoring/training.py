"""Training the predictive model on the organisation's closed leads."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import msgspec
from sklearn.model_selection import train_test_split

from app.leads.tables import CLOSED_STATUSES, Lead
from app.scoring import model as lead_model
from app.scoring.features import lead_features
from app.scoring.tables import ScoringModel

logger = logging.getLogger(__name__)

# Fewer closed leads than this train no model: scores stay rule-based.
MIN_OUTCOMES = int(os.environ.get("CRM_SCORING_MIN_OUTCOMES", "50"))
# Retrain before the nightly run once this many leads closed since the last one.
RETRAIN_AFTER = int(os.environ.get("CRM_SCORING_RETRAIN_AFTER", "200"))
HOLDOUT_SHARE = 0.2
BATCH = 2000


async def closed_leads() -> tuple[list[dict[str, str | None]], list[int]]:
    """Return the model records and outcomes (1 converted) of every closed lead."""
    records: list[dict[str, str | None]] = []
    outcomes: list[int] = []
    after = 0
    while True:
        rows = await Lead.raw(
            "SELECT id, source, status, answers::text AS answers FROM lead "
            "WHERE status = ANY({}) AND id > {} ORDER BY id LIMIT {}",
            list(CLOSED_STATUSES),
            after,
            BATCH,
        )
        for row in rows:
            row["answers"] = msgspec.json.decode(row["answers"] or "{}")
            records.append(lead_features(row))
            outcomes.append(1 if row["status"] == "converted" else 0)
        if len(rows) < BATCH:
            return records, outcomes
        after = rows[-1]["id"]


def train(
    records: list[dict[str, str | None]], outcomes: list[int]
) -> tuple[lead_model.LeadModel, dict[str, Any]]:
    """Measure the model on a stratified holdout, then fit it on every record."""
    try:
        train_records, test_records, train_outcomes, test_outcomes = train_test_split(
            records,
            outcomes,
            test_size=HOLDOUT_SHARE,
            stratify=outcomes,
            random_state=lead_model.RANDOM_SEED,
        )
        measured = lead_model.fit(train_records, train_outcomes)
        metrics = lead_model.evaluate(test_outcomes, measured.predict(test_records))
    except ValueError as error:
        # Too few of one outcome for the split; the fit on every record decides.
        metrics = {"holdout": f"not measured: {error}"}
    return lead_model.fit(records, outcomes), metrics


async def train_and_store() -> int | None:
    """Train a model on the closed leads and store it as the next version.

    Returns the version, or None when there are fewer than ``MIN_OUTCOMES``
    closed leads or too few of either outcome.
    """
    records, outcomes = await closed_leads()
    if len(records) < MIN_OUTCOMES:
        logger.info(
            "scoring model not trained, too few closed leads count=%d minimum=%d",
            len(records),
            MIN_OUTCOMES,
        )
        return None
    try:
        # Fitting takes seconds of CPU; the worker's other jobs keep running.
        fitted, metrics = await asyncio.to_thread(train, records, outcomes)
    except ValueError as error:
        logger.info("scoring model not trained count=%d: %s", len(records), error)
        return None

    data = await asyncio.to_thread(fitted.dumps)
    rows = await ScoringModel.raw(
        "INSERT INTO scoring_model (version, model, metrics, outcomes) "
        "SELECT coalesce(max(version), 0) + 1, {}, {}::jsonb, {} FROM scoring_model "
        "RETURNING version",
        data,
        msgspec.json.encode(metrics).decode(),
        len(records),
    )
    version: int = rows[0]["version"]
    logger.info(
        "scoring model trained version=%s outcomes=%d metrics=%s",
        version,
        len(records),
        metrics,
    )
    return version


async def outcomes_since_training() -> int:
    """Return how many leads closed since the newest model was trained."""
    rows = await Lead.raw(
        "SELECT count(*) AS n FROM lead WHERE status = ANY({}) AND closed_at > "
        "coalesce((SELECT max(trained_at) FROM scoring_model), '-infinity')",
        list(CLOSED_STATUSES),
    )
    return int(rows[0]["n"])


async def open_lead_ids(after: int, limit: int) -> list[int]:
    rows = await Lead.raw(
        "SELECT id FROM lead WHERE status <> ALL({}) AND id > {} ORDER BY id LIMIT {}",
        list(CLOSED_STATUSES),
        after,
        limit,
    )
    return [row["id"] for row in rows]
