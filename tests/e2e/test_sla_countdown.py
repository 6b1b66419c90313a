"""The SLA countdown on a ticket card ticks in the browser and changes colour."""

from __future__ import annotations

import datetime as dt

import pytest

from app.comments.service import add_comment
from app.sla import clock
from app.sla.calendars import parse_hours_text
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.tickets.service import create_ticket
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_team, make_user, unique

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(90),
]

ALWAYS_OPEN = "\n".join(
    f"{day} 00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)
COUNTDOWN = "#ticket-{} .sla-countdown"


async def countdown(page, ticket_id: int) -> dict[str, str]:
    return await page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            if (!element) return null;
            return {
                text: element.textContent,
                state: element.dataset.slaState,
                background: getComputedStyle(element).backgroundColor,
            };
        }""",
        COUNTDOWN.format(ticket_id),
    )


async def test_card_countdown_ticks_and_turns_red(browser, server) -> None:
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
            targets={"urgent": {"first_response": 1}},
        ),
        None,
    )
    agent = await make_user("admin", team=team)
    # Opened 40 s ago with a one-minute target: the warning (75 %) comes in
    # about 5 s and the breach in about 20 s.
    clock.set_now(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=40))
    try:
        ticket_id = await create_ticket(
            {"subject": unique("Countdown"), "priority": "urgent", "team": str(team)},
            None,
        )
    finally:
        clock.set_now(None)

    context, page = await signed_in_page(browser, server, agent.email)
    await page.goto("/tickets")
    await wait_live(page)
    selector = COUNTDOWN.format(ticket_id)

    first = await countdown(page, ticket_id)
    # The text changes without a request. The check allows a few seconds,
    # because a loaded machine may run the page's one-second timer late.
    await wait_until(
        page,
        "([s, text]) => document.querySelector(s).textContent !== text",
        [selector, first["text"]],
        timeout_ms=3_000,
    )
    second = await countdown(page, ticket_id)
    assert first["state"] == "ok"
    assert first["text"].startswith("First response in ")
    assert second["text"].startswith("First response in ")

    await wait_until(
        page,
        "(s) => document.querySelector(s).dataset.slaState === 'warning'",
        selector,
        timeout_ms=10_000,
    )
    warning = await countdown(page, ticket_id)
    await wait_until(
        page,
        "(s) => document.querySelector(s).dataset.slaState === 'breached'",
        selector,
        timeout_ms=20_000,
    )
    breached = await countdown(page, ticket_id)

    assert warning["background"] != first["background"]
    assert breached["background"] not in (first["background"], warning["background"])
    assert breached["text"].startswith("First response overdue ")

    # The reply meets the target; the pushed card has no running clock left.
    await add_comment("ticket", ticket_id, "Looking at it now.", agent.id)
    await wait_until(
        page, "(s) => document.querySelector(s) === null", selector, timeout_ms=5_000
    )
    await context.close()
