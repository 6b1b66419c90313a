"""Saving and listing scoring rules and models, for the admin page."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from app import fields
from app.errors import FieldError
from app.events.service import change_set
from app.imports.fields import limit
from app.pagination import Page, PageRequest
from app.scoring.tables import RULE_KINDS, ScoringModel, ScoringRule

logger = logging.getLogger(__name__)

MAX_POINTS = 100
MAX_HALF_LIFE_DAYS = 3650
SCORING_TOPIC = "scoring"


def parse_rule(data: dict[str, Any]) -> dict[str, Any]:
    """Check a submitted rule; raises FieldError naming the field and value."""
    kind = fields.choice("kind", data.get("kind"), RULE_KINDS)
    field = fields.text(
        "field", data.get("field"), required=True, max_length=limit(ScoringRule.field)
    )
    value = fields.text("value", data.get("value"), max_length=limit(ScoringRule.value))
    raw_points = str(data.get("points") or "").strip()
    try:
        points = int(raw_points)
    except ValueError:
        raise FieldError("points", raw_points, "is not a whole number") from None
    if not -MAX_POINTS <= points <= MAX_POINTS:
        raise FieldError(
            "points", points, f"must be between -{MAX_POINTS} and {MAX_POINTS}"
        )
    raw_half_life = str(data.get("half_life_days") or "").strip()
    half_life = None
    if raw_half_life:
        try:
            half_life = float(raw_half_life)
        except ValueError:
            raise FieldError(
                "half_life_days", raw_half_life, "is not a number"
            ) from None
        if not 0 < half_life <= MAX_HALF_LIFE_DAYS:
            raise FieldError(
                "half_life_days",
                raw_half_life,
                f"must be more than 0 and at most {MAX_HALF_LIFE_DAYS}",
            )
    return {
        "kind": kind,
        "field": field,
        "value": value if kind == "field" else "",
        "points": points,
        "half_life_days": half_life,
    }


async def add_rule(data: dict[str, Any], actor_id: int | None) -> int:
    values = parse_rule(data)
    async with change_set(actor_id) as changes:
        rows = await ScoringRule.insert(ScoringRule(**values)).returning(ScoringRule.id)
        rule_id: int = rows[0]["id"]
        changes.add(
            "scoring_rule.created",
            "scoring_rule",
            rule_id,
            [SCORING_TOPIC],
            {name: [None, value] for name, value in values.items()},
        )
    logger.info("scoring rule added rule_id=%s user_id=%s", rule_id, actor_id)
    return rule_id


async def delete_rule(rule_id: int, actor_id: int | None) -> bool:
    """Delete a rule; False when it did not exist, as after a second click."""
    async with change_set(actor_id) as changes:
        rows = (
            await ScoringRule.delete()
            .where(ScoringRule.id == rule_id)
            .returning(*ScoringRule.all_columns())
        )
        if not rows:
            logger.info(
                "scoring rule not deleted, not found rule_id=%s user_id=%s",
                rule_id,
                actor_id,
            )
            return False
        changes.add(
            "scoring_rule.deleted",
            "scoring_rule",
            rule_id,
            [SCORING_TOPIC],
            {
                name: [value, None]
                for name, value in rows[0].items()
                if name not in ("id", "created_at")
            },
        )
    logger.info("scoring rule deleted rule_id=%s user_id=%s", rule_id, actor_id)
    return True


async def list_rules(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await ScoringRule.count()
    rows = (
        await ScoringRule.select()
        .order_by(ScoringRule.id)
        .limit(paging.size)
        .offset(paging.offset)
    )
    return Page(rows=rows, total=total, paging=paging)


async def list_models(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await ScoringModel.count()
    rows = (
        await ScoringModel.select(
            ScoringModel.version,
            ScoringModel.trained_at,
            ScoringModel.metrics,
            ScoringModel.outcomes,
        )
        .order_by(ScoringModel.version, ascending=False)
        .limit(paging.size)
        .offset(paging.offset)
    )
    for row in rows:
        if isinstance(row["metrics"], str):
            row["metrics"] = msgspec.json.decode(row["metrics"] or "{}")
    return Page(rows=rows, total=total, paging=paging)
