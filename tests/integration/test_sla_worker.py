"""The SLA check run by a real arq worker process, on clocks already due."""

import asyncio
import datetime as dt
import time

import pytest

from app.events.tables import Event
from app.sla import clock
from app.sla.calendars import parse_hours_text
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.sla.tables import SlaClock
from app.tickets.service import create_ticket
from tests.factories import make_team, unique
from tests.servers import worker_process

ALWAYS_OPEN = "\n".join(
    f"{day} 00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


async def sla_events(ticket_id: int) -> list[str]:
    rows = await Event.raw(
        "SELECT changes->>'sla' AS trigger FROM event "
        "WHERE kind = 'ticket.sla' AND record_id = {} ORDER BY id",
        ticket_id,
    )
    return [row["trigger"] for row in rows]


@pytest.mark.timeout(90)
async def test_worker_warns_and_breaches_once() -> None:
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Always"), time_zone="UTC", hours=parse_hours_text(ALWAYS_OPEN)
        ),
        None,
    )
    team = await make_team()
    await save_policy(
        None,
        PolicyInput(
            name=unique("Policy"),
            calendar_id=calendar_id,
            team_id=team,
            targets={"urgent": {"first_response": 60, "resolution": 200}},
        ),
        None,
    )
    # Opened three hours ago: the first response (1 h) is overdue, and the
    # resolution (200 min) is past 75 % but still 20 minutes from due.
    clock.set_now(dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    try:
        ticket_id = await create_ticket(
            {"subject": unique("Down"), "priority": "urgent", "team": str(team)}, None
        )
    finally:
        clock.set_now(None)

    with worker_process():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if len(await sla_events(ticket_id)) >= 2:
                break
            await asyncio.sleep(0.5)
        # At least one more scheduled run, which must find nothing new.
        await asyncio.sleep(16)

    rows = await SlaClock.raw(
        "SELECT metric, breached_at, warned_at FROM sla_clock WHERE ticket = {}",
        ticket_id,
    )
    found = {row["metric"]: row for row in rows}

    assert sorted(await sla_events(ticket_id)) == ["sla.breached", "sla.warning"]
    assert found["first_response"]["breached_at"] is not None
    assert found["resolution"]["breached_at"] is None
    assert found["resolution"]["warned_at"] is not None
