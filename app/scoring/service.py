"""Computing a lead's score from the rules and the model, and storing it."""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from app.events.service import change_set
from app.leads.service import lead_topics
from app.leads.tables import Lead, LeadActivity
from app.scoring.features import lead_features
from app.scoring.model import LeadModel
from app.scoring.rules import Rule, rule_points, rule_score
from app.scoring.tables import ScoringModel, ScoringRule

logger = logging.getLogger(__name__)

# The model's share of the combined score; the rules get the rest. Without
# a trained model the combined score is the rules' score. Values outside 0
# to 1 are taken as the nearest end.
MODEL_WEIGHT = min(
    1.0, max(0.0, float(os.environ.get("CRM_SCORE_MODEL_WEIGHT", "0.5")))
)
SCORE_FIELDS = ("rule_score", "model_score", "score", "model_version")
# Only a lead's newest this many activities count towards activity rules.
MAX_ACTIVITIES = 500


@dataclass
class Score:
    rule_score: int
    model_score: int | None
    score: int
    model_version: int | None
    factors: list[dict[str, Any]]


class ModelCache:
    """The newest trained model, loaded again only when a newer one exists."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.model: LeadModel | None = None

    async def current(self) -> tuple[int | None, LeadModel | None]:
        newest = await ScoringModel.raw(
            "SELECT max(version) AS version FROM scoring_model"
        )
        version = newest[0]["version"] if newest else None
        if version is None:
            self.version, self.model = None, None
        elif version != self.version:
            row = (
                await ScoringModel.select(ScoringModel.model)
                .where(ScoringModel.version == version)
                .first()
            )
            if row is not None:
                try:
                    self.model = LeadModel.loads(bytes(row["model"]))
                except ValueError as error:
                    # A model stored before models were JSON is never
                    # unpickled. Scores are the rules' until the next training.
                    logger.warning(
                        "scoring model unreadable, using rules only version=%s: %s",
                        version,
                        error,
                    )
                    self.model = None
                self.version = version
                if self.model is not None:
                    logger.info("scoring model loaded version=%s", version)
        return self.version, self.model


MODELS = ModelCache()


def decode_json(value: Any, empty: Any) -> Any:
    """Return a JSONB column's value; Piccolo returns it as text."""
    if isinstance(value, str):
        return msgspec.json.decode(value) if value else empty
    return empty if value is None else value


async def load_rules() -> list[Rule]:
    rows = await ScoringRule.select().order_by(ScoringRule.id)
    return [
        Rule(
            kind=row["kind"],
            field=row["field"],
            value=row["value"],
            points=row["points"],
            half_life_days=row["half_life_days"],
        )
        for row in rows
    ]


def combine(rule_part: int, model_part: int | None) -> int:
    if model_part is None:
        return rule_part
    return round(MODEL_WEIGHT * model_part + (1 - MODEL_WEIGHT) * rule_part)


def compute_score(
    lead: dict[str, Any],
    activities: list[dict[str, Any]],
    rules: list[Rule],
    model: LeadModel | None,
    model_version: int | None,
    now: dt.datetime,
) -> Score:
    """Score one lead; the factors name what moved each part most."""
    points = rule_points(rules, lead, activities, now)
    factors = [
        {"text": item.text, "points": round(item.points), "part": "rules"}
        for item in sorted(points, key=lambda item: abs(item.points), reverse=True)
        if round(item.points) != 0
    ][:3]
    rule_part = rule_score(points)
    model_part = None
    if model is not None:
        record = lead_features(lead)
        model_part = round(100 * float(model.predict([record])[0]))
        factors += [
            {"text": factor.describe(), "points": factor.points, "part": "model"}
            for factor in model.explain(record)
        ]
    return Score(
        rule_score=rule_part,
        model_score=model_part,
        score=combine(rule_part, model_part),
        model_version=model_version if model is not None else None,
        factors=factors,
    )


async def rescore_lead(lead_id: int, now: dt.datetime | None = None) -> Score | None:
    """Compute the lead's score and store it when it changed; None if no lead.

    The new score goes out on the lead's streams as a "lead.scored" event.
    The row's version does not move: a score is not an edit anyone could
    conflict with.
    """
    now = now or dt.datetime.now(dt.UTC)
    lead = await Lead.select().where(Lead.id == lead_id).first()
    if lead is None:
        logger.info("rescoring skipped, lead not found lead_id=%s", lead_id)
        return None
    lead["answers"] = decode_json(lead["answers"], {})
    activities = (
        await LeadActivity.select(LeadActivity.kind, LeadActivity.occurred_at)
        .where(LeadActivity.lead == lead_id)
        .order_by(LeadActivity.occurred_at, ascending=False)
        .limit(MAX_ACTIVITIES)
    )
    version, model = await MODELS.current()
    score = compute_score(lead, activities, await load_rules(), model, version, now)

    stored_factors = decode_json(lead["score_factors"], [])
    new = {name: getattr(score, name) for name in SCORE_FIELDS}
    changed = {
        name: [lead[name], value] for name, value in new.items() if lead[name] != value
    }
    if not changed and stored_factors == score.factors:
        return score

    async with change_set(None) as changes:
        await Lead.update(
            {
                Lead.rule_score: score.rule_score,
                Lead.model_score: score.model_score,
                Lead.score: score.score,
                Lead.model_version: score.model_version,
                Lead.score_factors: msgspec.json.encode(score.factors).decode(),
                Lead.scored_at: now,
            }
        ).where(Lead.id == lead_id)
        changes.add(
            "lead.scored",
            "lead",
            lead_id,
            lead_topics(lead_id),
            changed or {"score_factors": [None, None]},
        )
    logger.info(
        "lead scored lead_id=%s score=%s rule_score=%s model_score=%s model_version=%s",
        lead_id,
        score.score,
        score.rule_score,
        score.model_score,
        score.model_version,
    )
    return score
