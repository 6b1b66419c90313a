"""Two people on one board: each change reaches the other within a second."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import drag, signed_in_page, wait_live, wait_until
from tests.factories import (
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 1000


async def wait_for_text(page, selector: str, text: str) -> None:
    await wait_until(
        page,
        "([selector, text]) => document.querySelector(selector).textContent === text",
        arg=[selector, text],
        timeout_ms=LIVE_TIMEOUT_MS,
    )


async def test_dragged_deal_moves_on_other_board(browser, server) -> None:
    pipeline = await make_pipeline()
    rep = await make_user("sales_rep")
    manager = await make_user("sales_manager")
    deal_id = await make_deal(pipeline, stage_index=0, amount="4200", owner=rep.id)
    await make_deal(pipeline, stage_index=1, amount="800")
    first, second = pipeline["stages"][:2]
    rep_context, rep_page = await signed_in_page(browser, server, rep.email)
    manager_context, manager_page = await signed_in_page(browser, server, manager.email)
    board = f"/pipelines/{pipeline['id']}"
    await rep_page.goto(board)
    await manager_page.goto(board)
    await wait_live(rep_page)
    await wait_live(manager_page)
    assert await manager_page.text_content(f"#stage-{second}-head .total") == "$800"

    await drag(rep_page, f"#deal-{deal_id}", f"#stage-{second}-cards")

    moved = manager_page.locator(f"#stage-{second}-cards #deal-{deal_id}")
    await moved.wait_for(timeout=LIVE_TIMEOUT_MS)
    await wait_for_text(manager_page, f"#stage-{second}-head .total", "$5,000")
    assert await manager_page.text_content(f"#stage-{first}-head .total") == "$0"
    assert (
        await manager_page.locator(f"#stage-{first}-cards #deal-{deal_id}").count() == 0
    )

    await rep_context.close()
    await manager_context.close()


async def test_ticket_status_change_moves_card(browser, server) -> None:
    team = await make_team()
    ticket_id = await make_ticket("new", team=team)
    agent = await make_user("support_agent", team=team)
    lead = await make_user("support_lead")
    agent_context, agent_page = await signed_in_page(browser, server, agent.email)
    lead_context, lead_page = await signed_in_page(browser, server, lead.email)
    await agent_page.goto("/tickets")
    await lead_page.goto("/tickets")
    await wait_live(agent_page)
    await wait_live(lead_page)
    pending_before = int(await lead_page.text_content("#status-pending-head .count"))

    await agent_page.select_option(
        f"#ticket-{ticket_id} select[name=status]", "pending"
    )

    await lead_page.locator(f"#status-pending-cards #ticket-{ticket_id}").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    await wait_for_text(
        lead_page, "#status-pending-head .count", str(pending_before + 1)
    )
    await agent_context.close()
    await lead_context.close()


async def test_new_comment_appears_on_other_ticket_page(browser, server) -> None:
    team = await make_team()
    ticket_id = await make_ticket("open", team=team)
    agent = await make_user("support_agent", team=team)
    colleague = await make_user("support_agent", team=team)
    agent_context, agent_page = await signed_in_page(browser, server, agent.email)
    colleague_context, colleague_page = await signed_in_page(
        browser, server, colleague.email
    )
    await agent_page.goto(f"/tickets/{ticket_id}")
    await colleague_page.goto(f"/tickets/{ticket_id}")
    await wait_live(agent_page)
    await wait_live(colleague_page)

    await agent_page.fill(
        ".comment-form textarea[name=body]", "Customer confirmed the fix works."
    )
    await agent_page.click(".comment-form button[type=submit]")

    comment = colleague_page.locator(
        "#comments .comment", has_text="Customer confirmed the fix works."
    )
    await comment.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert agent.name in await comment.text_content()
    await agent_context.close()
    await colleague_context.close()


async def test_column_loads_more_as_it_scrolls(browser, server) -> None:
    pipeline = await make_pipeline()
    for number in range(60):
        await make_deal(pipeline, stage_index=0, amount=str(number + 1))
    user = await make_user()
    context, page = await signed_in_page(browser, server, user.email)
    await page.goto(f"/pipelines/{pipeline['id']}")
    column = f"#stage-{pipeline['stages'][0]}-cards"
    cards = page.locator(f"{column} .card")
    assert await cards.count() == 25

    for expected in (50, 60):
        await page.eval_on_selector(
            column, "element => element.scrollTo(0, element.scrollHeight)"
        )
        await wait_until(
            page,
            "([selector, count]) =>"
            " document.querySelectorAll(selector).length === count",
            arg=[f"{column} .card", expected],
        )

    assert await page.locator(f"{column} .more").count() == 0
    assert (
        await page.text_content(f"#stage-{pipeline['stages'][0]}-head .count") == "60"
    )
    await context.close()


async def test_card_changed_during_its_drag_lands_once(browser, server) -> None:
    from tests.browserless import Session

    pipeline = await make_pipeline()
    dragger = await make_user("admin")
    editor = await make_user("admin")
    deal_id = await make_deal(pipeline, stage_index=0, amount="100")
    second = pipeline["stages"][1]
    context, page = await signed_in_page(browser, server, dragger.email)
    await page.goto(f"/pipelines/{pipeline['id']}")
    await wait_live(page)
    editing = Session(server.url)
    await editing.sign_in(editor.email)

    async def edit_the_card_meanwhile() -> None:
        # The card's live update arrives while it is still in the air.
        response = await editing.post(
            f"/deals/{deal_id}", {"amount": "250", "base_amount": "100.00"}
        )
        assert response.status_code == 200
        await page.wait_for_timeout(400)

    await drag(
        page, f"#deal-{deal_id}", f"#stage-{second}-cards", edit_the_card_meanwhile
    )

    await page.locator(f"#stage-{second}-cards #deal-{deal_id}").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    await wait_for_text(page, f"#stage-{second}-head .total", "$250")
    await page.wait_for_timeout(300)
    assert await page.locator(f"#deal-{deal_id}").count() == 1
    assert "250" in await page.text_content(f"#deal-{deal_id}")
    await editing.close()
    await context.close()
