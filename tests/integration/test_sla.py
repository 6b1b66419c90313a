import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.accounts.tables import Account
from app.comments.service import add_comment
from app.errors import FieldError
from app.pagination import PageRequest
from app.sla import clock
from app.sla.breaches import detect_breaches
from app.sla.calendars import (
    add_business_time,
    parse_holidays_text,
    parse_hours_text,
)
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.sla.queries import sla_report
from app.sla.tables import SlaClock
from app.tickets.queries import get_ticket
from app.tickets.service import create_ticket, set_ticket_field
from app.tickets.tables import Ticket
from tests.factories import make_team, make_user, unique

pytestmark = pytest.mark.timeout(60)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = "\n".join(
    f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")
)
TARGETS = {
    "urgent": {"first_response": 60, "next_response": 120, "resolution": 480},
    "low": {"first_response": 480, "resolution": 2400},
}


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[None]:
    yield
    clock.set_now(None)


async def make_policy(
    holidays: str = "", tier: str = "", position: int = 0, team: int | None = None
) -> dict[str, Any]:
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Calendar"),
            time_zone="Europe/Berlin",
            hours=parse_hours_text(WEEKDAYS_9_TO_5),
            holidays=parse_holidays_text(holidays),
        ),
        None,
    )
    team_id = team or await make_team()
    policy_id = await save_policy(
        None,
        PolicyInput(
            name=unique("Policy"),
            calendar_id=calendar_id,
            team_id=team_id,
            account_tier=tier,
            position=position,
            targets=TARGETS,
        ),
        None,
    )
    return {"calendar": calendar_id, "team": team_id, "policy": policy_id}


async def clocks(ticket_id: int) -> dict[str, dict[str, Any]]:
    """Return the latest clock of each metric."""
    rows = await SlaClock.raw(
        "SELECT * FROM sla_clock WHERE ticket = {} ORDER BY id", ticket_id
    )
    return {row["metric"]: row for row in rows}


async def open_ticket(team: int, at: dt.datetime, priority: str = "urgent") -> int:
    clock.set_now(at)
    return await create_ticket(
        {"subject": unique("Printer"), "priority": priority, "team": str(team)}, None
    )


async def set_status(ticket_id: int, before: str, after: str, at: dt.datetime) -> None:
    clock.set_now(at)
    await set_ticket_field(ticket_id, "status", after, before, None)


async def test_calendar_by_id_adds_business_time() -> None:
    setup = await make_policy(holidays="2026-03-09")

    due = await add_business_time(
        setup["calendar"], berlin(2026, 3, 6, 16, 0), dt.timedelta(hours=2)
    )

    assert due == berlin(2026, 3, 10, 10, 0)


async def test_due_times_skip_weekend_and_holiday() -> None:
    setup = await make_policy(holidays="2026-03-09")

    # Friday 16:30; Monday 9 March is a holiday.
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 6, 16, 30))
    found = await clocks(ticket_id)

    assert set(found) == {"first_response", "resolution"}
    assert found["first_response"]["due_at"] == berlin(2026, 3, 10, 9, 30)
    assert found["resolution"]["due_at"] == berlin(2026, 3, 10, 16, 30)
    # 45 of 60 minutes: 30 on Friday, 15 on Tuesday.
    assert found["first_response"]["warn_at"] == berlin(2026, 3, 10, 9, 15)


async def test_agent_reply_meets_first_response() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 10, 0))

    clock.set_now(berlin(2026, 3, 2, 10, 40))
    await add_comment("ticket", ticket_id, "We are on it.", agent.id)
    found = await clocks(ticket_id)

    assert found["first_response"]["met"] is True
    assert found["first_response"]["stopped_at"] == berlin(2026, 3, 2, 10, 40)
    assert found["resolution"]["stopped_at"] is None


async def test_internal_note_is_no_response() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 10, 0))

    clock.set_now(berlin(2026, 3, 2, 10, 40))
    await add_comment("ticket", ticket_id, "Looks like the fuser.", agent.id, True)

    assert (await clocks(ticket_id))["first_response"]["stopped_at"] is None


async def test_late_reply_breaches_first_response() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 10, 0))

    clock.set_now(berlin(2026, 3, 2, 11, 30))
    await add_comment("ticket", ticket_id, "Sorry for the wait.", agent.id)
    first = (await clocks(ticket_id))["first_response"]

    assert first["met"] is False
    assert first["breached_at"] == berlin(2026, 3, 2, 11, 0)


async def test_pending_pauses_resolution() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    before = (await clocks(ticket_id))["resolution"]["due_at"]
    assert before == berlin(2026, 3, 2, 17, 0)
    clock.set_now(berlin(2026, 3, 2, 9, 30))
    await add_comment("ticket", ticket_id, "Which model is it?", agent.id)

    # Pending from Monday 15:00 to Tuesday 11:00: 2 + 2 business hours.
    await set_status(ticket_id, "new", "pending", berlin(2026, 3, 2, 15, 0))
    ticket = await get_ticket(ticket_id)
    assert ticket["sla_paused_at"] == berlin(2026, 3, 2, 15, 0)

    await set_status(ticket_id, "pending", "open", berlin(2026, 3, 3, 11, 0))
    found = await clocks(ticket_id)

    assert found["resolution"]["due_at"] == berlin(2026, 3, 3, 13, 0)
    assert found["resolution"]["breached_at"] is None
    # Leaving pending for open means the requester replied.
    assert found["next_response"]["stopped_at"] is None
    assert found["next_response"]["due_at"] == berlin(2026, 3, 3, 13, 0)
    assert (await get_ticket(ticket_id))["sla_paused_at"] is None


async def test_pause_leaves_overdue_clock_overdue() -> None:
    setup = await make_policy()
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))

    # First response was due at 10:00, before the pause began.
    await set_status(ticket_id, "new", "pending", berlin(2026, 3, 2, 11, 0))
    await set_status(ticket_id, "pending", "open", berlin(2026, 3, 2, 15, 0))
    first = (await clocks(ticket_id))["first_response"]

    assert first["due_at"] == berlin(2026, 3, 2, 10, 0)
    assert first["paused_base"] == 4 * 3600
    # Resolution was not overdue, so it moves on by the four hours.
    assert (await clocks(ticket_id))["resolution"]["due_at"] == berlin(
        2026, 3, 3, 13, 0
    )


async def test_cron_skips_paused_ticket() -> None:
    setup = await make_policy()
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    await set_status(ticket_id, "new", "pending", berlin(2026, 3, 2, 9, 30))

    await detect_breaches(berlin(2026, 3, 20, 9, 0))
    found = await clocks(ticket_id)

    assert found["first_response"]["breached_at"] is None
    assert found["resolution"]["breached_at"] is None


async def test_next_response_met_and_breached() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    clock.set_now(berlin(2026, 3, 2, 9, 10))
    await add_comment("ticket", ticket_id, "Can you send a photo?", agent.id)

    # The requester writes back (an inbound message has no author).
    clock.set_now(berlin(2026, 3, 2, 10, 0))
    await add_comment("ticket", ticket_id, "Here it is.", None)
    first_next = (await clocks(ticket_id))["next_response"]
    assert first_next["due_at"] == berlin(2026, 3, 2, 12, 0)

    clock.set_now(berlin(2026, 3, 2, 11, 0))
    await add_comment("ticket", ticket_id, "Thanks, replacing it.", agent.id)
    assert (await clocks(ticket_id))["next_response"]["met"] is True

    clock.set_now(berlin(2026, 3, 2, 13, 0))
    await add_comment("ticket", ticket_id, "Still broken.", None)
    clock.set_now(berlin(2026, 3, 2, 16, 0))
    await add_comment("ticket", ticket_id, "Technician is coming.", agent.id)
    rows = await SlaClock.raw(
        "SELECT met FROM sla_clock WHERE ticket = {} AND metric = 'next_response' "
        "ORDER BY id",
        ticket_id,
    )

    assert [row["met"] for row in rows] == [True, False]


async def test_solving_meets_or_misses_resolution() -> None:
    setup = await make_policy()
    on_time = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    late = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))

    await set_status(on_time, "new", "solved", berlin(2026, 3, 2, 16, 0))
    await set_status(late, "new", "solved", berlin(2026, 3, 3, 10, 0))
    met = await clocks(on_time)
    missed = await clocks(late)

    assert met["resolution"]["met"] is True
    assert missed["resolution"]["met"] is False
    assert missed["resolution"]["breached_at"] == berlin(2026, 3, 2, 17, 0)
    # A ticket solved without a reply has no first response result.
    assert met["first_response"]["met"] is None
    assert met["first_response"]["stopped_at"] == berlin(2026, 3, 2, 16, 0)


async def test_priority_change_moves_due_times() -> None:
    setup = await make_policy()
    ticket_id = await open_ticket(
        setup["team"], berlin(2026, 3, 2, 9, 0), priority="low"
    )
    assert (await clocks(ticket_id))["first_response"]["due_at"] == berlin(
        2026, 3, 2, 17, 0
    )

    clock.set_now(berlin(2026, 3, 2, 9, 5))
    await set_ticket_field(ticket_id, "priority", "urgent", "low", None)

    assert (await clocks(ticket_id))["first_response"]["due_at"] == berlin(
        2026, 3, 2, 10, 0
    )


async def test_account_tier_selects_policy() -> None:
    team = await make_team()
    gold = await make_policy(tier="gold", position=-1, team=team)
    await make_policy(position=0, team=team)
    rows = await Account.insert(Account(name=unique("Account"), tier="gold")).returning(
        Account.id
    )
    clock.set_now(berlin(2026, 3, 2, 9, 0))
    ticket_id = await create_ticket(
        {"subject": unique("Outage"), "priority": "urgent", "team": str(team)}, None
    )
    # The form has no account field, so the test links the account directly
    # and then changes the priority, which re-reads the policy.
    await Ticket.update({Ticket.account: rows[0]["id"]}).where(Ticket.id == ticket_id)
    await set_ticket_field(ticket_id, "priority", "low", "urgent", None)
    state = await SlaClock.raw(
        "SELECT policy FROM ticket_sla WHERE ticket = {}", ticket_id
    )

    assert state[0]["policy"] == gold["policy"]


async def test_report_counts_met_and_breached() -> None:
    setup = await make_policy()
    agent = await make_user(team=setup["team"])
    met = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    missed = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    clock.set_now(berlin(2026, 3, 2, 9, 30))
    await add_comment("ticket", met, "On it.", agent.id)
    await detect_breaches(berlin(2026, 3, 2, 10, 30))

    report = await sla_report(
        berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 3, 0, 0), PageRequest(size=200)
    )
    mine = [
        row
        for row in report.rows
        if row["team_id"] == setup["team"] and row["metric"] == "first_response"
    ]

    assert len(mine) == 1
    assert mine[0]["priority"] == "urgent"
    assert mine[0]["met"] == 1
    assert mine[0]["breached"] == 1
    assert (await clocks(missed))["first_response"]["breached_at"] == berlin(
        2026, 3, 2, 10, 30
    )


async def test_policy_rejects_bad_target() -> None:
    setup = await make_policy()

    with pytest.raises(FieldError) as raised:
        await save_policy(
            None,
            PolicyInput(
                name=unique("Policy"),
                calendar_id=setup["calendar"],
                targets={"urgent": {"first_response": 0}},
            ),
            None,
        )

    assert raised.value.field == "urgent first response"


async def test_calendar_without_hours_rejected() -> None:
    with pytest.raises(FieldError) as raised:
        await save_calendar(
            None,
            CalendarInput(
                name=unique("Calendar"), time_zone="UTC", hours=parse_hours_text("")
            ),
            None,
        )

    assert raised.value.field == "hours"
