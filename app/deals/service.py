"""Changing deals: every page, API call and job that edits one comes here."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app import fields
from app.auth.tables import User
from app.deals.tables import Deal, Pipeline, Stage
from app.errors import EditConflict, FieldError, NotFound
from app.events.service import change_set
from app.merge import Edit, MergeResult, merge_edit

logger = logging.getLogger(__name__)

# Fields the edit form changes, with their parsers.
EDITABLE = ("name", "amount", "close_date", "owner", "stage")


def deal_topics(deal: dict[str, Any]) -> list[str]:
    return [f"pipeline:{deal['pipeline']}", f"deal:{deal['id']}"]


def parse_deal_field(name: str, raw: str | None) -> Any:
    if name == "name":
        return fields.text("name", raw, required=True)
    if name == "amount":
        return fields.amount("amount", raw)
    if name == "close_date":
        return fields.date("close_date", raw)
    if name in ("owner", "stage"):
        return fields.reference(name, raw)
    raise FieldError(name, raw, "is not an editable deal field")


async def check_references(pipeline_id: int, values: dict[str, Any]) -> None:
    if "stage" in values:
        stage = (
            await Stage.select(Stage.pipeline)
            .where(Stage.id == values["stage"])
            .first()
        )
        if stage is None or values["stage"] is None:
            raise FieldError("stage", values["stage"], "does not exist")
        if stage["pipeline"] != pipeline_id:
            raise FieldError("stage", values["stage"], "belongs to another pipeline")
    if values.get("owner") is not None:
        if not await User.exists().where(User.id == values["owner"]):
            raise FieldError("owner", values["owner"], "is not a user")


async def update_deal(
    deal_id: int, edits: dict[str, Edit], actor_id: int | None
) -> MergeResult:
    """Apply an edit to a deal, merging it with changes made since its base.

    Fields that someone else changed meanwhile are left as they are and
    returned in ``conflicts``; the rest apply in the same transaction.
    """
    deal = await Deal.select(Deal.pipeline).where(Deal.id == deal_id).first()
    if deal is None:
        raise NotFound("deal", deal_id)
    await check_references(
        deal["pipeline"], {name: edit.new for name, edit in edits.items()}
    )

    async with change_set(actor_id) as changes:
        also_set = {"stage": {"stage_entered_at": dt.datetime.now(dt.UTC)}}
        result = await merge_edit(Deal, deal_id, edits, changes, also_set)
        if result.applied:
            changes.add(
                "deal.updated",
                "deal",
                deal_id,
                deal_topics(result.after),
                result.applied,
            )

    logger.info(
        "deal updated deal_id=%s user_id=%s fields=%s conflicts=%s",
        deal_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def move_deal(
    deal_id: int, to_stage_id: int, from_stage_id: int, actor_id: int | None
) -> MergeResult:
    """Move a deal to a stage, unless it is no longer in ``from_stage_id``.

    Raises EditConflict when someone else moved it meanwhile, and FieldError
    when the stage does not exist or belongs to another pipeline.
    """
    result = await update_deal(
        deal_id, {"stage": Edit(from_stage_id, to_stage_id)}, actor_id
    )
    if result.conflicts:
        raise EditConflict("deal", deal_id, result.conflicts)
    return result


async def create_deal(values: dict[str, str], actor_id: int | None) -> int:
    """Create a deal from form values; ``pipeline`` and ``stage`` are required."""
    pipeline_id = fields.reference("pipeline", values.get("pipeline"))
    if pipeline_id is None:
        raise FieldError("pipeline", values.get("pipeline"), "must be chosen")
    if not await Pipeline.exists().where(Pipeline.id == pipeline_id):
        raise FieldError("pipeline", pipeline_id, "does not exist")
    parsed = {name: parse_deal_field(name, values.get(name)) for name in EDITABLE}
    if parsed["stage"] is None:
        raise FieldError("stage", values.get("stage"), "must be chosen")
    await check_references(pipeline_id, parsed)

    async with change_set(actor_id) as changes:
        rows = await Deal.insert(
            Deal(
                name=parsed["name"],
                amount=parsed["amount"],
                close_date=parsed["close_date"],
                owner=parsed["owner"] or actor_id,
                stage=parsed["stage"],
                pipeline=pipeline_id,
                team=await owner_team(parsed["owner"] or actor_id),
            )
        ).returning(Deal.id)
        deal_id = rows[0]["id"]
        topics = [f"pipeline:{pipeline_id}", f"deal:{deal_id}"]
        changes.add(
            "deal.created", "deal", deal_id, topics, {"stage": [None, parsed["stage"]]}
        )

    logger.info("deal created deal_id=%s user_id=%s", deal_id, actor_id)
    return deal_id


async def owner_team(user_id: int | None) -> int | None:
    if user_id is None:
        return None
    row = await User.select(User.team).where(User.id == user_id).first()
    return row["team"] if row else None
