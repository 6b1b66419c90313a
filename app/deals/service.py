"""Changing deals: every page, API call and job that edits one comes here."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from piccolo.table import Table

from app import fields
from app.access.permissions import Access
from app.access.scopes import scope_sql
from app.accounts.tables import Account
from app.auth.tables import Team, User
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Product, Stage
from app.errors import EditConflict, FieldError, NotFound
from app.events.service import ChangeSet, change_set
from app.forecast.figures import FORECAST_CATEGORIES
from app.merge import Edit, MergeResult, merge_edit

logger = logging.getLogger(__name__)

# Fields the edit form and the API change (``parse_deal_field`` reads them).
# They include every field in REQUIRABLE, so a deal can be moved into any
# stage by an edit that fills what the stage requires.
EDITABLE = (
    "name",
    "amount",
    "close_date",
    "engage_date",
    "owner",
    "team",
    "account",
    "contact",
    "product",
    "stage",
    "forecast_category",
)
# Fields a stage may require before a deal enters it, with the words error
# messages use for them. The board's entry form, the edit form and the API
# can set each of them.
REQUIRABLE = {
    "amount": "amount",
    "close_date": "close date",
    "engage_date": "engage date",
    "owner": "owner",
    "team": "team",
    "account": "account",
    "contact": "contact",
    "product": "product",
}
REFERENCES: dict[str, tuple[type[Table], str]] = {
    "owner": (User, "is not a user"),
    "team": (Team, "is not a team"),
    "account": (Account, "is not an account"),
    "contact": (Contact, "is not a contact"),
    "product": (Product, "is not a product"),
}
# Reference fields whose records have read scopes, each with its object type
# (also its table's name). A person may set only records they may read, and
# products have no scope.
SCOPED_REFERENCES = {"account": "account", "contact": "contact"}


def check_requirable(field: str, value: Any, label: str | None = None) -> str:
    """Return ``value`` if it names a field in REQUIRABLE, else raise FieldError."""
    if not isinstance(value, str) or value not in REQUIRABLE:
        raise FieldError(
            field, value, f"is not one of {', '.join(REQUIRABLE)}", label=label
        )
    return value


def in_requirable_order(names: Iterable[str]) -> list[str]:
    """Return the distinct ``names`` in REQUIRABLE's order, as stages store them."""
    chosen = set(names)
    return [name for name in REQUIRABLE if name in chosen]


class MissingFields(FieldError):
    """A deal would enter a stage whose required fields it leaves empty.

    ``missing`` contains the field names in the stage's order, and the
    message lists them in words.
    """

    def __init__(self, stage_id: int, stage_name: str, missing: list[str]) -> None:
        self.stage_id = stage_id
        self.stage_name = stage_name
        self.missing = missing
        super().__init__(
            "stage",
            stage_name,
            f"needs {field_list(missing)} before a deal can enter it",
        )


def field_list(names: list[str]) -> str:
    """Return "amount", "amount and close date" or "amount, owner and team"."""
    words = [REQUIRABLE.get(name, name.replace("_", " ")) for name in names]
    if len(words) < 3:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def deal_topics(deal: dict[str, Any]) -> list[str]:
    return [f"pipeline:{deal['pipeline']}", f"deal:{deal['id']}"]


def queue_rescoring(changes: ChangeSet, deal_id: int) -> None:
    """Queue the deal's rescoring once the change set's transaction has committed."""
    from app.forecast.queue import enqueue_deal_rescore

    async def rescore() -> None:
        await enqueue_deal_rescore(deal_id)

    changes.after_commit.append(rescore)


def parse_deal_field(name: str, raw: str | None) -> Any:
    if name == "name":
        return fields.text("name", raw, required=True)
    if name == "amount":
        return fields.amount("amount", raw)
    if name == "close_date":
        return fields.date("close_date", raw)
    if name == "engage_date":
        return fields.date("engage_date", raw)
    if name in ("owner", "team", "stage", "account", "contact", "product"):
        return fields.reference(name, raw)
    if name == "forecast_category":
        # Empty means the category the deal's stage implies.
        if raw is None or not str(raw).strip():
            return None
        return fields.choice(name, str(raw), FORECAST_CATEGORIES)
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
    for name, (table, reason) in REFERENCES.items():
        if values.get(name) is not None:
            if not await table.exists().where(table._meta.primary_key == values[name]):
                raise FieldError(name, values[name], reason)


async def check_readable_references(
    access: Access, values: Mapping[str, Any], deal_id: int | None = None
) -> None:
    """Raise FieldError for an account or contact in ``values`` that ``access``
    may not read.

    The error is the one a missing record gets, so it does not tell that the
    record exists. Writers acting as the system (imports, rules) skip this.
    """
    for name, object_type in SCOPED_REFERENCES.items():
        record_id = values.get(name)
        if record_id is None:
            continue
        args: list[object] = [record_id]
        scope = scope_sql(access, object_type, "r", args)
        found = await Deal.raw(
            f"SELECT 1 FROM {object_type} r WHERE r.id = {{}} AND {scope}", *args
        )
        if not found:
            logger.info(
                "deal reference rejected deal_id=%s user_id=%s field=%s value=%s",
                deal_id,
                access.user_id,
                name,
                record_id,
            )
            raise FieldError(name, record_id, REFERENCES[name][1])


def missing_fields(deal: dict[str, Any], required: list[str]) -> list[str]:
    """Return the names in ``required`` whose value in ``deal`` is empty."""
    return [name for name in required if deal.get(name) in (None, "")]


async def check_stage_entry(deal: dict[str, Any]) -> None:
    """Raise MissingFields when ``deal`` (a whole row, as it would be stored)
    leaves a field of its stage's required fields empty."""
    stage = (
        await Stage.select(Stage.name, Stage.required_fields)
        .where(Stage.id == deal["stage"])
        .first()
    )
    if stage is None:
        raise FieldError("stage", deal["stage"], "does not exist")
    missing = missing_fields(deal, list(stage["required_fields"] or []))
    if missing:
        raise MissingFields(deal["stage"], stage["name"], missing)


async def rejected_stage_entries(
    rows: Sequence[Mapping[str, Any]],
) -> dict[int, MissingFields]:
    """Check the deal rows an import is about to write, and return the errors
    of the rows to reject, by the row's index.

    Each row has ``external_key`` and ``stage``. A row enters its stage when
    no deal has its key yet, or when the stored deal is in another stage and
    nobody changed it in Switchboard since the last import (else the import
    keeps it as it is). Columns a row leaves out keep their stored values.
    """
    stage_ids = sorted({row["stage"] for row in rows})
    ruled = await Stage.raw(
        "SELECT id, name, required_fields FROM stage "
        "WHERE id = ANY({}) AND cardinality(required_fields) > 0",
        stage_ids,
    )
    rules = {row["id"]: row for row in ruled}
    if not rules:
        return {}
    keys = [row["external_key"] for row in rows if row["stage"] in rules]
    stored = {
        row["external_key"]: row
        for row in await Deal.raw(
            "SELECT * FROM deal WHERE external_key = ANY({})", keys
        )
    }
    rejected = {}
    for index, row in enumerate(rows):
        rule = rules.get(row["stage"])
        if rule is None:
            continue
        before = stored.get(row["external_key"])
        if before is not None:
            untouched = (before["import_version"] or before["version"]) == before[
                "version"
            ]
            if before["stage"] == row["stage"] or not untouched:
                continue
        missing = missing_fields({**(before or {}), **row}, rule["required_fields"])
        if missing:
            rejected[index] = MissingFields(row["stage"], rule["name"], missing)
    return rejected


async def check_stage_change(record: dict[str, Any], values: dict[str, Any]) -> None:
    """Check the required fields of the stage ``values`` move ``record`` to,
    for writers that set values directly, such as workflow rules."""
    if "stage" in values and values["stage"] != record.get("stage"):
        await check_stage_entry({**record, **values})


async def update_deal(
    deal_id: int,
    edits: dict[str, Edit],
    actor_id: int | None,
    expected_version: int | None = None,
    *,
    reject_conflicts: bool = False,
) -> MergeResult:
    """Apply an edit to a deal, merging it with changes made since its base.

    Fields that someone else changed meanwhile are left as they are and
    returned in ``conflicts``; the rest apply in the same transaction. With
    ``reject_conflicts``, a conflict raises EditConflict and nothing is
    written. A deal that would enter a stage while leaving one of the
    stage's required fields empty raises MissingFields, and nothing is
    written either.
    """
    deal = await Deal.select(Deal.pipeline).where(Deal.id == deal_id).first()
    if deal is None:
        raise NotFound("deal", deal_id)
    if "forecast_category" in edits:
        # Workflow actions and imports pass values unparsed, and an empty
        # one means the stage's category.
        category = edits["forecast_category"]
        edits = {
            **edits,
            "forecast_category": Edit(
                category.base, parse_deal_field("forecast_category", category.new)
            ),
        }
    await check_references(
        deal["pipeline"], {name: edit.new for name, edit in edits.items()}
    )

    async with change_set(actor_id) as changes:
        also_set = {"stage": {"stage_entered_at": dt.datetime.now(dt.UTC)}}
        result = await merge_edit(
            Deal,
            deal_id,
            edits,
            changes,
            also_set,
            expected_version=expected_version,
        )
        if reject_conflicts and result.conflicts:
            raise EditConflict("deal", deal_id, result.conflicts)
        if "stage" in result.applied:
            try:
                await check_stage_entry(result.after)
            except MissingFields as error:
                logger.info(
                    "deal stage entry rejected deal_id=%s stage_id=%s user_id=%s "
                    "missing=%s",
                    deal_id,
                    error.stage_id,
                    actor_id,
                    error.missing,
                )
                raise
        if result.applied:
            changes.add(
                "deal.updated",
                "deal",
                deal_id,
                deal_topics(result.after),
                result.applied,
            )
            queue_rescoring(changes, deal_id)

    logger.info(
        "deal updated deal_id=%s user_id=%s fields=%s conflicts=%s",
        deal_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def move_deal(
    deal_id: int,
    to_stage_id: int,
    from_stage_id: int,
    actor_id: int | None,
    values: dict[str, Edit] | None = None,
) -> MergeResult:
    """Move a deal to a stage, unless it is no longer in ``from_stage_id``.

    ``values`` are further edits, of fields in ``REQUIRABLE``, that go with
    the move in the same change, such as the fields the stage requires.
    Raises EditConflict when someone else moved the deal or changed one of
    those fields meanwhile, MissingFields when the stage's required fields
    would stay empty, and FieldError when the stage does not exist or
    belongs to another pipeline. Whatever it raises, nothing is written.
    """
    extra = values or {}
    for name in extra:
        if name not in REQUIRABLE:
            raise FieldError(name, None, "cannot be set with a move")
    edits = {**extra, "stage": Edit(from_stage_id, to_stage_id)}
    return await update_deal(deal_id, edits, actor_id, reject_conflicts=True)


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
                engage_date=parsed["engage_date"],
                account=parsed["account"],
                contact=parsed["contact"],
                product=parsed["product"],
                forecast_category=parsed["forecast_category"],
                owner=parsed["owner"] or actor_id,
                stage=parsed["stage"],
                pipeline=pipeline_id,
                team=parsed["team"] or await owner_team(parsed["owner"] or actor_id),
            )
        ).returning(Deal.id)
        deal_id = rows[0]["id"]
        created = await Deal.select().where(Deal.id == deal_id).first()
        assert created is not None
        try:
            await check_stage_entry(created)
        except MissingFields as error:
            logger.info(
                "new deal rejected stage_id=%s user_id=%s missing=%s",
                error.stage_id,
                actor_id,
                error.missing,
            )
            raise
        topics = [f"pipeline:{pipeline_id}", f"deal:{deal_id}"]
        changes.add(
            "deal.created", "deal", deal_id, topics, {"stage": [None, parsed["stage"]]}
        )
        queue_rescoring(changes, deal_id)

    logger.info("deal created deal_id=%s user_id=%s", deal_id, actor_id)
    return deal_id


async def owner_team(user_id: int | None) -> int | None:
    if user_id is None:
        return None
    row = await User.select(User.team).where(User.id == user_id).first()
    return row["team"] if row else None
