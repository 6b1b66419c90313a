"""Creating and changing business-hours calendars and SLA policies."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app import fields
from app.accounts.service import TIERS
from app.auth.tables import Team
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.pagination import Page, PageRequest
from app.sla.calendars import (
    WeeklyHours,
    hours_from_json,
    hours_to_json,
    parse_time_zone,
)
from app.sla.tables import BusinessCalendar, SlaPolicy
from app.sla.tracking import METRICS
from app.tickets.tables import PRIORITIES

logger = logging.getLogger(__name__)

MAX_NAME = 120
MAX_TIER = 40
# A target longer than a year of business minutes is a typing mistake.
MAX_TARGET_MINUTES = 525_600


@dataclass
class CalendarInput:
    name: str
    time_zone: str
    hours: WeeklyHours
    holidays: frozenset[dt.date] = field(default_factory=frozenset)


@dataclass
class PolicyInput:
    name: str
    calendar_id: int | None
    team_id: int | None = None
    account_tier: str = ""
    position: int = 0
    active: bool = True
    # {priority: {metric: minutes}}
    targets: dict[str, dict[str, int]] = field(default_factory=dict)


def check_name(name: str) -> str:
    return fields.text("name", name, required=True, max_length=MAX_NAME)


def parse_target(priority: str, metric: str, raw: str | None) -> int | None:
    """Parse a target in business minutes; empty means no target."""
    name = f"{priority} {metric.replace('_', ' ')}"
    text = (raw or "").strip()
    if not text:
        return None
    try:
        minutes = int(text)
    except ValueError:
        raise FieldError(name, text, "is not a whole number of minutes") from None
    if not 0 < minutes <= MAX_TARGET_MINUTES:
        raise FieldError(
            name, text, f"must be between 1 and {MAX_TARGET_MINUTES} minutes"
        )
    return minutes


def check_targets(targets: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    checked: dict[str, dict[str, int]] = {}
    for priority, by_metric in targets.items():
        if priority not in PRIORITIES:
            raise FieldError("targets", priority, "is not a ticket priority")
        for metric, minutes in by_metric.items():
            if metric not in METRICS:
                raise FieldError("targets", metric, "is not an SLA metric")
            parse_target(priority, metric, str(minutes))
            checked.setdefault(priority, {})[metric] = int(minutes)
    return checked


async def list_calendars(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await BusinessCalendar.count()
    rows = await BusinessCalendar.raw(
        "SELECT id, name, time_zone, cardinality(holidays) AS holiday_count "
        "FROM sla_calendar ORDER BY lower(name), id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def all_calendars() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await BusinessCalendar.select(
        BusinessCalendar.id, BusinessCalendar.name
    ).order_by(BusinessCalendar.name)
    return rows


async def get_calendar(calendar_id: int) -> dict[str, Any]:
    row = (
        await BusinessCalendar.select()
        .where(BusinessCalendar.id == calendar_id)
        .output(load_json=True)
        .first()
    )
    if row is None:
        raise NotFound("calendar", calendar_id)
    row["hours"] = hours_from_json(row["hours"])
    row["holidays"] = sorted(row["holidays"] or [])
    return row


async def write_settings(
    table: type[BusinessCalendar] | type[SlaPolicy],
    record_type: str,
    label: str,
    row_id: int | None,
    stored: dict[str, Any],
    shown: dict[str, Any],
    actor_id: int | None,
) -> tuple[int, str]:
    """Insert a calendar or policy row (``row_id`` None) or update it, and
    record the event in the same transaction.

    ``shown`` contains the values the event records, and ``label`` names
    the row in NotFound. Returns the row's id and the event's kind.
    """
    async with change_set(actor_id) as changes:
        if row_id is None:
            rows = await table.insert(
                table(**stored)  # type: ignore[arg-type]
            ).returning(table.id)
            row_id = rows[0]["id"]
            kind = f"{record_type}.created"
        else:
            updated = (
                await table.update(
                    {
                        **{getattr(table, k): v for k, v in stored.items()},
                        table.updated_at: dt.datetime.now(dt.UTC),
                    }
                )
                .where(table.id == row_id)
                .returning(table.id)
            )
            if not updated:
                raise NotFound(label, row_id)
            kind = f"{record_type}.updated"
        changes.add(
            kind,
            record_type,
            row_id,
            [],
            {key: [None, value] for key, value in shown.items()},
        )
    return row_id, kind


async def save_calendar(
    calendar_id: int | None, values: CalendarInput, actor_id: int | None
) -> int:
    """Create a calendar (``calendar_id`` None) or replace one's settings."""
    name = check_name(values.name)
    time_zone = parse_time_zone(values.time_zone).key
    if not any(values.hours):
        # Every due time under such a calendar would be unreachable.
        raise FieldError("hours", "", "are missing; give at least one interval")
    hours = hours_to_json(values.hours)
    holidays = sorted(values.holidays)
    taken = BusinessCalendar.exists().where(BusinessCalendar.name == name)
    if calendar_id is not None:
        taken = taken.where(BusinessCalendar.id != calendar_id)
    if await taken:
        raise FieldError("name", name, "belongs to another calendar already")

    stored = {
        "name": name,
        "time_zone": time_zone,
        "hours": msgspec.json.encode(hours).decode(),
        "holidays": holidays,
    }
    shown = {**stored, "holidays": [day.isoformat() for day in holidays]}
    calendar_id, kind = await write_settings(
        BusinessCalendar,
        "sla_calendar",
        "calendar",
        calendar_id,
        stored,
        shown,
        actor_id,
    )

    logger.info("%s calendar_id=%s user_id=%s", kind, calendar_id, actor_id)
    return calendar_id


async def list_policies(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await SlaPolicy.count()
    rows = await SlaPolicy.raw(
        "SELECT p.id, p.name, p.position, p.active, p.account_tier, "
        "c.name AS calendar_name, tm.name AS team_name "
        "FROM sla_policy p JOIN sla_calendar c ON c.id = p.calendar "
        "LEFT JOIN team tm ON tm.id = p.team "
        "ORDER BY p.position, p.id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def get_policy(policy_id: int) -> dict[str, Any]:
    row = (
        await SlaPolicy.select()
        .where(SlaPolicy.id == policy_id)
        .output(load_json=True)
        .first()
    )
    if row is None:
        raise NotFound("policy", policy_id)
    return row


async def save_policy(
    policy_id: int | None, values: PolicyInput, actor_id: int | None
) -> int:
    """Create a policy (``policy_id`` None) or replace one's settings.

    A changed policy applies to the running clocks of its tickets the next
    time their priority or team changes, and to new tickets at once.
    """
    name = check_name(values.name)
    tier = values.account_tier.strip().lower()
    if len(tier) > MAX_TIER:
        raise FieldError(
            "account_tier", tier[:40], f"must be at most {MAX_TIER} characters"
        )
    if tier and tier not in TIERS:
        raise FieldError(
            "account_tier",
            values.account_tier,
            f"is not an account tier; use one of {', '.join(TIERS)} or leave it empty",
        )
    targets = check_targets(values.targets)
    if values.calendar_id is None:
        raise FieldError("calendar", None, "is required")
    if not await BusinessCalendar.exists().where(
        BusinessCalendar.id == values.calendar_id
    ):
        raise FieldError("calendar", values.calendar_id, "is not a calendar")
    if values.team_id is not None and not await Team.exists().where(
        Team.id == values.team_id
    ):
        raise FieldError("team", values.team_id, "is not a team")
    taken = SlaPolicy.exists().where(SlaPolicy.name == name)
    if policy_id is not None:
        taken = taken.where(SlaPolicy.id != policy_id)
    if await taken:
        raise FieldError("name", name, "belongs to another policy already")

    stored = {
        "name": name,
        "calendar": values.calendar_id,
        "team": values.team_id,
        "account_tier": tier,
        "position": values.position,
        "active": values.active,
        "targets": msgspec.json.encode(targets).decode(),
    }
    shown = {**stored, "targets": targets}
    policy_id, kind = await write_settings(
        SlaPolicy, "sla_policy", "policy", policy_id, stored, shown, actor_id
    )

    logger.info("%s policy_id=%s user_id=%s", kind, policy_id, actor_id)
    return policy_id
