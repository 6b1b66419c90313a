"""Changing tickets: every page, API call and job that edits one comes here."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app import fields
from app.auth.tables import Team, User
from app.encryption.columns import encrypt_values
from app.errors import EditConflict, FieldError
from app.events.service import change_set
from app.merge import Edit, MergeResult, merge_edit
from app.tickets.tables import CHANNELS, PRIORITIES, STATUSES, Ticket

logger = logging.getLogger(__name__)

EDITABLE = (
    "subject",
    "description",
    "status",
    "priority",
    "assignee",
    "team",
    "type",
    "channel",
)
MAX_DESCRIPTION = 50_000


def ticket_topics(ticket_id: int) -> list[str]:
    return ["tickets", f"ticket:{ticket_id}"]


def parse_ticket_field(name: str, raw: str | None) -> Any:
    if name == "subject":
        return fields.text("subject", raw, required=True)
    if name == "description":
        return fields.text("description", raw, max_length=MAX_DESCRIPTION)
    if name == "status":
        return fields.choice("status", raw, STATUSES)
    if name == "priority":
        return fields.choice("priority", raw, PRIORITIES)
    if name == "channel":
        return fields.choice("channel", raw, CHANNELS)
    if name == "type":
        return fields.text("type", raw, max_length=60)
    if name in ("assignee", "team"):
        return fields.reference(name, raw)
    raise FieldError(name, raw, "is not an editable ticket field")


async def check_assignee(values: dict[str, Any]) -> None:
    assignee = values.get("assignee")
    if assignee is not None and not await User.exists().where(User.id == assignee):
        raise FieldError("assignee", assignee, "is not a user")
    team = values.get("team")
    if team is not None and not await Team.exists().where(Team.id == team):
        raise FieldError("team", team, "is not a team")


async def update_ticket(
    ticket_id: int,
    edits: dict[str, Edit],
    actor_id: int | None,
    expected_version: int | None = None,
) -> MergeResult:
    """Apply an edit to a ticket, merging it with changes made since its base."""
    await check_assignee({name: edit.new for name, edit in edits.items()})

    async with change_set(actor_id) as changes:
        also_set = {"status": {"status_changed_at": dt.datetime.now(dt.UTC)}}
        result = await merge_edit(
            Ticket,
            ticket_id,
            edits,
            changes,
            also_set,
            expected_version=expected_version,
        )
        if result.applied:
            changes.add(
                "ticket.updated",
                "ticket",
                ticket_id,
                ticket_topics(ticket_id),
                result.applied,
            )

    logger.info(
        "ticket updated ticket_id=%s user_id=%s fields=%s conflicts=%s",
        ticket_id,
        actor_id,
        sorted(result.applied),
        [conflict.field for conflict in result.conflicts],
    )
    return result


async def set_ticket_field(
    ticket_id: int,
    name: str,
    raw: str | None,
    base_raw: str | None,
    actor_id: int | None,
) -> MergeResult:
    """Change one field from a board card or a quick action.

    Raises EditConflict when someone else changed that field since ``base_raw``.
    """
    edit = Edit(
        base=parse_ticket_field(name, base_raw), new=parse_ticket_field(name, raw)
    )
    result = await update_ticket(ticket_id, {name: edit}, actor_id)
    if result.conflicts:
        raise EditConflict("ticket", ticket_id, result.conflicts)
    return result


async def create_ticket(values: dict[str, str], actor_id: int | None) -> int:
    """Create a ticket from submitted text; ``subject`` is required.

    Fields left out get the table's defaults, and ``team`` that of the
    assignee (or of the actor, for an unassigned ticket). Raises FieldError
    naming the field for an invalid value, before anything is written.
    """
    parsed = {
        name: parse_ticket_field(name, values.get(name))
        for name in EDITABLE
        if name in values or name == "subject"
    }
    await check_assignee(parsed)
    team = parsed.get("team") or await user_team(parsed.get("assignee") or actor_id)
    defaults = {"status": "new", "priority": "medium", "channel": "web"}

    async with change_set(actor_id) as changes:
        rows = await Ticket.insert(
            Ticket(
                **encrypt_values(
                    Ticket,
                    {
                        **defaults,
                        **{name: value for name, value in parsed.items() if value},
                        "team": team,
                    },
                )
            )
        ).returning(Ticket.id)
        ticket_id = rows[0]["id"]
        status = parsed.get("status") or defaults["status"]
        changes.add(
            "ticket.created",
            "ticket",
            ticket_id,
            ticket_topics(ticket_id),
            {"status": [None, status]},
        )

    logger.info("ticket created ticket_id=%s user_id=%s", ticket_id, actor_id)
    return ticket_id


async def user_team(user_id: int | None) -> int | None:
    if user_id is None:
        return None
    row = await User.select(User.team).where(User.id == user_id).first()
    return row["team"] if row else None
