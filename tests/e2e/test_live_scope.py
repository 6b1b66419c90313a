"""Boards follow scope live: a record reassigned to another team leaves the
boards of the viewers who lose it and arrives on those who gain it."""

from __future__ import annotations

import time

import pytest

from tests.browserless import Session
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import (
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 1000
# Seconds from sending the change until both boards show it.
LIVE_TARGET = 1.0


async def test_reassigned_ticket_moves_between_team_boards(browser, server) -> None:
    team_a, team_b = await make_team(), await make_team()
    leaving = await make_ticket("open", team=team_a, subject="Leaves team A")
    arriving = await make_ticket("open", team=team_b, subject="Arrives in team A")
    agent_a = await make_user("support_agent", team=team_a)
    agent_b = await make_user("support_agent", team=team_b)
    lead = await make_user("support_lead")
    context_a, page_a = await signed_in_page(browser, server, agent_a.email)
    context_b, page_b = await signed_in_page(browser, server, agent_b.email)
    lead_session = Session(server.url)
    await lead_session.sign_in(lead.email)
    await page_a.goto("/tickets")
    await page_b.goto("/tickets")
    await wait_live(page_a)
    await wait_live(page_b)
    assert await page_a.locator(f"#ticket-{leaving}").count() == 1
    assert await page_a.locator(f"#ticket-{arriving}").count() == 0
    assert await page_b.locator(f"#ticket-{leaving}").count() == 0

    started = time.monotonic()
    response = await lead_session.post(
        f"/tickets/{leaving}", {"team": str(team_b), "base_team": str(team_a)}
    )
    assert response.status_code == 200
    await page_a.locator(f"#ticket-{leaving}").wait_for(
        state="detached", timeout=LIVE_TIMEOUT_MS
    )
    await page_b.locator(f"#status-open-cards #ticket-{leaving}").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    moved_out = time.monotonic() - started

    started = time.monotonic()
    response = await lead_session.post(
        f"/tickets/{arriving}", {"team": str(team_a), "base_team": str(team_b)}
    )
    assert response.status_code == 200
    await page_a.locator(f"#status-open-cards #ticket-{arriving}").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    await page_b.locator(f"#ticket-{arriving}").wait_for(
        state="detached", timeout=LIVE_TIMEOUT_MS
    )
    moved_in = time.monotonic() - started

    assert moved_out < LIVE_TARGET, f"left and arrived after {moved_out:.3f} s"
    assert moved_in < LIVE_TARGET, f"arrived and left after {moved_in:.3f} s"
    assert "Arrives in team A" in await page_a.text_content(f"#ticket-{arriving}")
    await lead_session.close()
    await context_a.close()
    await context_b.close()


async def test_reassigned_deal_leaves_rep_board(browser, server) -> None:
    team_a, team_b = await make_team(), await make_team()
    pipeline = await make_pipeline()
    rep_a = await make_user("sales_rep", team=team_a)
    rep_b = await make_user("sales_rep", team=team_b)
    admin = await make_user("admin")
    deal_id = await make_deal(pipeline, team=team_a, amount="1200", name="Team deal")
    context_a, page_a = await signed_in_page(browser, server, rep_a.email)
    context_b, page_b = await signed_in_page(browser, server, rep_b.email)
    admin_session = Session(server.url)
    await admin_session.sign_in(admin.email)
    board = f"/pipelines/{pipeline['id']}"
    await page_a.goto(board)
    await page_b.goto(board)
    await wait_live(page_a)
    await wait_live(page_b)
    first_head = f"#stage-{pipeline['stages'][0]}-head .count"
    assert await page_a.locator(f"#deal-{deal_id}").count() == 1
    assert await page_a.text_content(first_head) == "1"
    assert await page_b.text_content(first_head) == "0"

    started = time.monotonic()
    response = await admin_session.post(
        f"/deals/{deal_id}", {"team": str(team_b), "base_team": str(team_a)}
    )
    assert response.status_code == 200

    await page_a.locator(f"#deal-{deal_id}").wait_for(
        state="detached", timeout=LIVE_TIMEOUT_MS
    )
    await page_b.locator(f"#deal-{deal_id}").wait_for(timeout=LIVE_TIMEOUT_MS)
    moved = time.monotonic() - started
    await page_a.wait_for_function(
        "([selector]) => document.querySelector(selector).textContent === '0'",
        arg=[first_head],
        timeout=LIVE_TIMEOUT_MS,
    )
    assert moved < LIVE_TARGET, f"left and arrived after {moved:.3f} s"
    assert await page_b.text_content(first_head) == "1"
    await admin_session.close()
    await context_a.close()
    await context_b.close()
