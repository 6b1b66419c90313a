"""Move the SLA clocks of tickets as they change, inside the change's transaction.

``track_changes`` runs from ``ChangeSet.write`` on every change set. It
looks at the queued ticket and comment events and:

- starts the first response and resolution clocks of a new ticket under the
  first policy that matches it;
- pauses every clock while the ticket is pending, and on resuming moves the
  due times on by the business time spent pending;
- meets the first response, or the running next response, when an agent
  adds a public comment (any comment with a signed-in author);
- starts a next response clock when the requester replies, that is when a
  ticket leaves pending for another open status, or a public comment without
  an author (an inbound message) arrives;
- meets or misses the resolution when the ticket is solved or closed, and
  starts a fresh resolution clock when it is opened again;
- re-reads the targets when the priority or team changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from app.sla import clock
from app.sla.calendars import (
    Calendar,
    add_business_duration,
    business_time_between,
    calendar_from_row,
)
from app.sla.tables import SlaClock, SlaPolicy, TicketSla

if TYPE_CHECKING:
    from app.events.service import ChangeSet

logger = logging.getLogger(__name__)

METRICS = ("first_response", "next_response", "resolution")
RESPONSE_METRICS = ("first_response", "next_response")
DONE_STATUSES = ("solved", "closed")
PAUSED_STATUS = "pending"
# A warning goes out once this share of a target has passed.
WARN_SHARE = 0.75
SLA_EVENT = "ticket.sla"
# Edits of other fields, such as the subject, leave the clocks alone.
TRACKED_FIELDS = frozenset({"status", "priority", "team"})

MATCH_POLICY = """
    SELECT p.id, p.calendar, p.targets::text AS targets
    FROM sla_policy p
    WHERE p.active
      AND (p.team IS NULL OR p.team = {})
      AND (p.account_tier = '' OR p.account_tier =
           (SELECT a.tier FROM account a WHERE a.id = {}))
    ORDER BY p.position, p.id
    LIMIT 1
"""


async def track_changes(changes: ChangeSet) -> None:
    """Apply the queued ticket and comment events of ``changes`` to SLA clocks."""
    now = clock.now()
    for item in list(changes.pending):
        kind = item["kind"]
        if item["record_type"] == "ticket" and kind in (
            "ticket.created",
            "ticket.updated",
        ):
            ticket_id = item["record_id"]
            await on_ticket_change(ticket_id, kind, item["changes"], now)
        elif (
            kind == "comment.created"
            and isinstance(item["changes"].get("ticket"), int)
            # Notes that workflow rules write are neither replies nor messages.
            and "rule" not in item["changes"]
        ):
            ticket_id = item["changes"]["ticket"]
            if await on_ticket_comment(item["record_id"], ticket_id, now):
                announce(changes, ticket_id)


def announce(changes: ChangeSet, ticket_id: int) -> None:
    """Queue an event that makes boards and the ticket's page redraw its clock."""
    for item in changes.pending:
        if item["record_type"] == "ticket" and item["record_id"] == ticket_id:
            return
    changes.add(
        SLA_EVENT,
        "ticket",
        ticket_id,
        ["tickets", f"ticket:{ticket_id}"],
        {"sla": True},
    )


async def on_ticket_change(
    ticket_id: int, kind: str, field_changes: dict[str, Any], now: dt.datetime
) -> None:
    if kind == "ticket.updated" and not TRACKED_FIELDS.intersection(field_changes):
        return
    state = await lock_state(ticket_id)
    if state is None:
        # A ticket without a policy gets one if a new priority or team matches.
        if kind == "ticket.created" or {"priority", "team"} & field_changes.keys():
            await start_tracking(ticket_id, now)
        return

    calendar = await state_calendar(state)
    if calendar is None:
        return

    status = field_changes.get("status")
    if isinstance(status, list) and len(status) == 2:
        await on_status_change(state, calendar, status[0], status[1], now)

    if "priority" in field_changes or "team" in field_changes:
        await retarget(state, now)


async def lock_state(ticket_id: int) -> dict[str, Any] | None:
    rows = await TicketSla.raw(
        "SELECT * FROM ticket_sla WHERE ticket = {} FOR UPDATE", ticket_id
    )
    return rows[0] if rows else None


async def state_calendar(state: dict[str, Any]) -> Calendar | None:
    if state["calendar"] is None:
        return None
    rows = await TicketSla.raw(
        "SELECT time_zone, hours::text AS hours, holidays FROM sla_calendar "
        "WHERE id = {}",
        state["calendar"],
    )
    if not rows:
        return None
    row = dict(rows[0])
    row["hours"] = decode(row["hours"])
    return calendar_from_row(row)


def decode(text: str) -> Any:
    return msgspec.json.decode(text)


async def ticket_row(ticket_id: int) -> dict[str, Any] | None:
    rows = await TicketSla.raw(
        "SELECT id, status, priority, team, account FROM ticket WHERE id = {}",
        ticket_id,
    )
    return rows[0] if rows else None


async def matching_policy(ticket: dict[str, Any]) -> dict[str, Any] | None:
    rows = await SlaPolicy.raw(MATCH_POLICY, ticket["team"], ticket["account"])
    if not rows:
        return None
    policy = dict(rows[0])
    policy["targets"] = decode(policy["targets"])
    return policy


def target_seconds(policy: dict[str, Any] | None, priority: str, metric: str) -> int:
    """Return the policy's target in seconds, or 0 when it has none."""
    if policy is None:
        return 0
    minutes = policy["targets"].get(priority, {}).get(metric)
    return int(minutes) * 60 if minutes else 0


async def start_tracking(ticket_id: int, now: dt.datetime) -> None:
    ticket = await ticket_row(ticket_id)
    if ticket is None:
        return
    policy = await matching_policy(ticket)
    if policy is None:
        return
    rows = await TicketSla.insert(
        TicketSla(
            ticket=ticket_id,
            policy=policy["id"],
            calendar=policy["calendar"],
            priority=ticket["priority"],
            started_at=now,
            paused_at=now if ticket["status"] == PAUSED_STATUS else None,
        )
    ).returning(*TicketSla.all_columns())
    state = rows[0]
    calendar = await state_calendar(state)
    if calendar is None:
        return
    for metric in ("first_response", "resolution"):
        await start_clock(state, calendar, policy, metric, now)
    logger.info(
        "sla tracking started ticket_id=%s policy_id=%s", ticket_id, policy["id"]
    )


def clock_times(
    calendar: Calendar,
    started_at: dt.datetime,
    target: int,
    paused: int,
) -> tuple[dt.datetime, dt.datetime]:
    """Return the due and warning times of a clock.

    ``paused`` is the business time in seconds spent pending since it started,
    which is added to the target because that time does not count.
    """
    due = add_business_duration(
        calendar, started_at, dt.timedelta(seconds=target + paused)
    )
    warn = add_business_duration(
        calendar, started_at, dt.timedelta(seconds=target * WARN_SHARE + paused)
    )
    return due, warn


async def start_clock(
    state: dict[str, Any],
    calendar: Calendar,
    policy: dict[str, Any] | None,
    metric: str,
    now: dt.datetime,
) -> None:
    target = target_seconds(policy, state["priority"], metric)
    if not target:
        return
    due, warn = clock_times(calendar, now, target, 0)
    await SlaClock.insert(
        SlaClock(
            ticket=state["ticket"],
            metric=metric,
            started_at=now,
            paused_base=state["paused_seconds"],
            target_seconds=target,
            due_at=due,
            warn_at=warn,
        )
    )


async def running_clocks(ticket_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await SlaClock.raw(
        "SELECT * FROM sla_clock WHERE ticket = {} AND stopped_at IS NULL "
        "ORDER BY id FOR UPDATE",
        ticket_id,
    )
    return rows


async def stop_clock(
    row: dict[str, Any],
    now: dt.datetime,
    met: bool | None,
    due_at: dt.datetime | None = None,
) -> None:
    """Stop a clock; ``met`` None records no result unless it was breached.

    ``due_at`` replaces the stored due time, which does not yet include a
    pause still going on.
    """
    due = due_at or row["due_at"]
    late = row["breached_at"] is not None or now > due
    if met is None:
        result = False if row["breached_at"] is not None else None
    else:
        result = met and not late
    breached_at = row["breached_at"]
    if result is False and breached_at is None:
        # Missed without the cron noticing first: it was breached when due.
        breached_at = due
    await SlaClock.update(
        {
            SlaClock.stopped_at: now,
            SlaClock.met: result,
            SlaClock.breached_at: breached_at,
        }
    ).where(SlaClock.id == row["id"])


async def on_status_change(
    state: dict[str, Any],
    calendar: Calendar,
    before: str | None,
    after: str,
    now: dt.datetime,
) -> None:
    ticket_id = state["ticket"]
    if before == PAUSED_STATUS and state["paused_at"] is not None:
        await resume(state, calendar, now)
        if after not in DONE_STATUSES and after != PAUSED_STATUS:
            await start_next_response(state, calendar, now)

    if after == PAUSED_STATUS and state["paused_at"] is None:
        await TicketSla.update(
            {TicketSla.paused_at: now, TicketSla.updated_at: now}
        ).where(TicketSla.id == state["id"])
        state["paused_at"] = now

    if after in DONE_STATUSES and before not in DONE_STATUSES:
        for row in await running_clocks(ticket_id):
            met = True if row["metric"] == "resolution" else None
            await stop_clock(row, now, met)

    if before in DONE_STATUSES and after not in DONE_STATUSES:
        await reopen_resolution(state, calendar, now)


async def resume(state: dict[str, Any], calendar: Calendar, now: dt.datetime) -> None:
    """End a pause: count its business time and move the running clocks on.

    A clock that was already overdue when the pause began stays overdue,
    so its ``paused_base`` takes the pause in and its due time stays.
    """
    paused_at = state["paused_at"]
    pause = int(business_time_between(calendar, paused_at, now).total_seconds())
    paused_seconds = state["paused_seconds"] + pause
    await TicketSla.update(
        {
            TicketSla.paused_at: None,
            TicketSla.paused_seconds: paused_seconds,
            TicketSla.updated_at: now,
        }
    ).where(TicketSla.id == state["id"])
    state["paused_at"] = None
    state["paused_seconds"] = paused_seconds
    for row in await running_clocks(state["ticket"]):
        if row["due_at"] <= paused_at:
            await SlaClock.update(
                {SlaClock.paused_base: row["paused_base"] + pause}
            ).where(SlaClock.id == row["id"])
    await reschedule(state, calendar)


async def reschedule(state: dict[str, Any], calendar: Calendar) -> None:
    """Recompute the due and warning times of the running, unbreached clocks."""
    for row in await running_clocks(state["ticket"]):
        if row["breached_at"] is not None:
            continue
        due, warn = clock_times(
            calendar,
            row["started_at"],
            row["target_seconds"],
            state["paused_seconds"] - row["paused_base"],
        )
        await SlaClock.update({SlaClock.due_at: due, SlaClock.warn_at: warn}).where(
            SlaClock.id == row["id"]
        )


async def start_next_response(
    state: dict[str, Any], calendar: Calendar, now: dt.datetime
) -> bool:
    """Start a next response clock, unless a response clock is running or the
    first response is still to come; return True if one started."""
    rows = await SlaClock.raw(
        "SELECT metric, stopped_at FROM sla_clock WHERE ticket = {} "
        "AND metric = ANY({})",
        state["ticket"],
        list(RESPONSE_METRICS),
    )
    if any(row["stopped_at"] is None for row in rows):
        return False
    policy = await policy_of(state)
    if not target_seconds(policy, state["priority"], "next_response"):
        return False
    await start_clock(state, calendar, policy, "next_response", now)
    return True


async def policy_of(state: dict[str, Any]) -> dict[str, Any] | None:
    if state["policy"] is None:
        return None
    rows = await SlaPolicy.raw(
        "SELECT id, calendar, targets::text AS targets FROM sla_policy WHERE id = {}",
        state["policy"],
    )
    if not rows:
        return None
    policy = dict(rows[0])
    policy["targets"] = decode(policy["targets"])
    return policy


async def reopen_resolution(
    state: dict[str, Any], calendar: Calendar, now: dt.datetime
) -> None:
    """Start a fresh resolution clock for a reopened ticket.

    The clock stopped at solving keeps its result, and the new one runs the
    full target of the ticket's current policy and priority from ``now``.
    """
    policy = await policy_of(state)
    await start_clock(state, calendar, policy, "resolution", now)
    logger.info(
        "sla resolution restarted on reopen ticket_id=%s policy_id=%s",
        state["ticket"],
        state["policy"],
    )


async def retarget(state: dict[str, Any], now: dt.datetime) -> None:
    """Apply the policy and targets that fit the ticket's new priority or team."""
    ticket = await ticket_row(state["ticket"])
    if ticket is None:
        return
    policy = await matching_policy(ticket)
    calendar_id = policy["calendar"] if policy else state["calendar"]
    await TicketSla.update(
        {
            TicketSla.policy: policy["id"] if policy else None,
            TicketSla.calendar: calendar_id,
            TicketSla.priority: ticket["priority"],
            TicketSla.updated_at: now,
        }
    ).where(TicketSla.id == state["id"])
    state.update(
        policy=policy["id"] if policy else None,
        calendar=calendar_id,
        priority=ticket["priority"],
    )
    calendar = await state_calendar(state)
    for row in await running_clocks(state["ticket"]):
        target = target_seconds(policy, ticket["priority"], row["metric"])
        if not target:
            await stop_clock(row, now, None)
            continue
        await SlaClock.update({SlaClock.target_seconds: target}).where(
            SlaClock.id == row["id"]
        )
    if calendar is not None:
        await reschedule(state, calendar)


async def on_ticket_comment(comment_id: int, ticket_id: int, now: dt.datetime) -> bool:
    """Meet or start response clocks for a new comment; True if a clock changed."""
    rows = await SlaClock.raw(
        "SELECT author, internal FROM comment WHERE id = {}", comment_id
    )
    if not rows or rows[0]["internal"]:
        return False
    state = await lock_state(ticket_id)
    if state is None:
        return False

    if rows[0]["author"] is None:
        calendar = await state_calendar(state)
        if calendar is None or state["paused_at"] is not None:
            return False
        return await start_next_response(state, calendar, now)

    calendar = await state_calendar(state)
    paused = state["paused_seconds"]
    if calendar is not None and state["paused_at"] is not None:
        # A reply while pending: the pause so far does not count either.
        pause = business_time_between(calendar, state["paused_at"], now)
        paused += int(pause.total_seconds())

    changed = False
    for row in await running_clocks(ticket_id):
        if row["metric"] in RESPONSE_METRICS:
            due = None
            if calendar is not None and row["breached_at"] is None:
                due, _ = clock_times(
                    calendar,
                    row["started_at"],
                    row["target_seconds"],
                    paused - row["paused_base"],
                )
            await stop_clock(row, now, True, due)
            changed = True
            logger.info(
                "sla response recorded ticket_id=%s metric=%s comment_id=%s",
                ticket_id,
                row["metric"],
                comment_id,
            )
    return changed
