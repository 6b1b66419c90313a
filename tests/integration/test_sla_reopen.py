"""A reopened ticket gets a fresh resolution clock with the full target."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.sla import clock
from app.sla.calendars import parse_hours_text
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.sla.tables import SlaClock
from app.tickets.service import create_ticket, set_ticket_field
from tests.factories import make_team, unique

pytestmark = pytest.mark.timeout(60)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = "\n".join(
    f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")
)
# Eight business hours to resolve an urgent ticket: one working day.
TARGETS = {"urgent": {"first_response": 60, "resolution": 480}}


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[None]:
    yield
    clock.set_now(None)


async def make_team_policy() -> int:
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Calendar"),
            time_zone="Europe/Berlin",
            hours=parse_hours_text(WEEKDAYS_9_TO_5),
        ),
        None,
    )
    team_id = await make_team()
    await save_policy(
        None,
        PolicyInput(
            name=unique("Policy"),
            calendar_id=calendar_id,
            team_id=team_id,
            targets=TARGETS,
        ),
        None,
    )
    return team_id


async def resolution_clocks(ticket_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await SlaClock.raw(
        "SELECT * FROM sla_clock WHERE ticket = {} AND metric = 'resolution' "
        "ORDER BY id",
        ticket_id,
    )
    return rows


async def set_status(ticket_id: int, before: str, after: str, at: dt.datetime) -> None:
    clock.set_now(at)
    await set_ticket_field(ticket_id, "status", after, before, None)


async def open_ticket(team_id: int, at: dt.datetime) -> int:
    clock.set_now(at)
    return await create_ticket(
        {"subject": unique("Printer"), "priority": "urgent", "team": str(team_id)},
        None,
    )


@pytest.mark.parametrize("done", ["solved", "closed"])
async def test_reopen_starts_fresh_resolution_clock(done: str) -> None:
    team_id = await make_team_policy()
    # Monday 10:00, due Tuesday 10:00.
    ticket_id = await open_ticket(team_id, berlin(2026, 3, 2, 10, 0))
    await set_status(ticket_id, "new", done, berlin(2026, 3, 2, 11, 0))

    # Reopened on Wednesday 15:00, a day after the first due time passed.
    await set_status(ticket_id, done, "open", berlin(2026, 3, 4, 15, 0))
    first, second = await resolution_clocks(ticket_id)

    assert first["met"] is True
    assert first["stopped_at"] == berlin(2026, 3, 2, 11, 0)
    assert first["due_at"] == berlin(2026, 3, 3, 10, 0)
    assert second["started_at"] == berlin(2026, 3, 4, 15, 0)
    assert second["stopped_at"] is None
    assert second["met"] is None
    assert second["breached_at"] is None
    # Wednesday 15:00 to 17:00, then Thursday 09:00 to 15:00.
    assert second["due_at"] == berlin(2026, 3, 5, 15, 0)
    assert second["target_seconds"] == 480 * 60


async def test_second_solve_meets_new_clock() -> None:
    team_id = await make_team_policy()
    ticket_id = await open_ticket(team_id, berlin(2026, 3, 2, 10, 0))
    await set_status(ticket_id, "new", "solved", berlin(2026, 3, 2, 11, 0))
    await set_status(ticket_id, "solved", "open", berlin(2026, 3, 4, 15, 0))

    await set_status(ticket_id, "open", "solved", berlin(2026, 3, 5, 9, 30))
    first, second = await resolution_clocks(ticket_id)

    assert first["met"] is True
    assert second["met"] is True
    assert second["stopped_at"] == berlin(2026, 3, 5, 9, 30)


async def test_reopened_clock_breaches_when_late() -> None:
    team_id = await make_team_policy()
    ticket_id = await open_ticket(team_id, berlin(2026, 3, 2, 10, 0))
    await set_status(ticket_id, "new", "solved", berlin(2026, 3, 2, 11, 0))
    await set_status(ticket_id, "solved", "open", berlin(2026, 3, 4, 15, 0))

    # Friday 10:00 is past Thursday 15:00.
    await set_status(ticket_id, "open", "closed", berlin(2026, 3, 6, 10, 0))
    first, second = await resolution_clocks(ticket_id)

    assert first["met"] is True
    assert second["met"] is False
    assert second["breached_at"] == berlin(2026, 3, 5, 15, 0)


async def test_reopen_while_pending_pauses_new_clock() -> None:
    team_id = await make_team_policy()
    ticket_id = await open_ticket(team_id, berlin(2026, 3, 2, 10, 0))
    await set_status(ticket_id, "new", "solved", berlin(2026, 3, 2, 11, 0))
    # Reopened straight to pending on Wednesday 15:00, resumed Thursday 10:00:
    # the new clock gains the three business hours it waited.
    await set_status(ticket_id, "solved", "pending", berlin(2026, 3, 4, 15, 0))
    await set_status(ticket_id, "pending", "open", berlin(2026, 3, 5, 10, 0))
    _, second = await resolution_clocks(ticket_id)

    assert second["stopped_at"] is None
    assert second["due_at"] == berlin(2026, 3, 6, 10, 0)
