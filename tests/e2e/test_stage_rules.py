"""A drag into a stage whose required fields are empty requests them first."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.deals.tables import Deal, Stage
from app.events.tables import Event
from tests.e2e.conftest import drag, signed_in_page, wait_live
from tests.factories import make_deal, make_pipeline, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 1000
STAGES = ("Prospecting", "Proposal", "Won", "Lost")

# Counts, in a page, the cards of one deal that enter a column, so a test
# can tell that the card moved exactly once.
COUNT_ARRIVALS = """([column, cardId]) => {
  window.arrivals = 0;
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.id === cardId) window.arrivals += 1;
      }
    }
  }).observe(document.querySelector(column), { childList: true });
}"""


async def ruled_pipeline() -> dict:
    pipeline = await make_pipeline(STAGES)
    await Stage.update({Stage.required_fields: ["amount", "close_date"]}).where(
        Stage.id == pipeline["stages"][1]
    )
    return pipeline


async def deal_without_amount(pipeline: dict, owner: int) -> int:
    deal_id = await make_deal(pipeline, stage_index=0, owner=owner)
    await Deal.update({Deal.amount: None}).where(Deal.id == deal_id)
    return deal_id


async def test_drag_requests_fields_then_moves_once(browser, server) -> None:
    pipeline = await ruled_pipeline()
    first, proposal = pipeline["stages"][:2]
    rep = await make_user("sales_rep")
    watcher = await make_user("sales_manager")
    deal_id = await deal_without_amount(pipeline, rep.id)
    rep_context, rep_page = await signed_in_page(browser, server, rep.email)
    watch_context, watch_page = await signed_in_page(browser, server, watcher.email)
    board = f"/pipelines/{pipeline['id']}"
    await rep_page.goto(board)
    await watch_page.goto(board)
    await wait_live(rep_page)
    await wait_live(watch_page)
    card = f"deal-{deal_id}"
    await watch_page.evaluate(COUNT_ARRIVALS, [f"#stage-{proposal}-cards", card])

    await drag(rep_page, f"#{card}", f"#stage-{proposal}-cards")

    dialog = rep_page.locator("#stage-entry dialog[open]")
    await dialog.wait_for()
    assert "Proposal needs amount and close date" in await dialog.inner_text()
    # The dialog has inputs only for the fields the stage lacks.
    assert await dialog.locator("input[name=amount]").count() == 1
    assert await dialog.locator("input[name=close_date]").count() == 1
    assert await dialog.locator("input[name=name], select[name=owner]").count() == 0
    # Nothing was saved, so the other board has not moved the card.
    await watch_page.wait_for_timeout(300)
    assert await watch_page.locator(f"#stage-{first}-cards #{card}").count() == 1

    await dialog.locator("input[name=amount]").fill("1500")
    await dialog.locator("input[name=close_date]").fill("2027-05-31")
    await dialog.locator("button[type=submit]").click()

    await rep_page.locator("#stage-entry dialog").wait_for(state="detached")
    moved = watch_page.locator(f"#stage-{proposal}-cards #{card}")
    await moved.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "$1,500" in await moved.inner_text()
    await rep_page.locator(f"#stage-{proposal}-cards #{card}").wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    await watch_page.wait_for_timeout(300)
    assert await watch_page.evaluate("() => window.arrivals") == 1
    assert await watch_page.locator(f"#{card}").count() == 1
    assert await rep_page.locator(f"#{card}").count() == 1
    row = await Deal.select().where(Deal.id == deal_id).first()
    assert (row["stage"], row["amount"], row["close_date"]) == (
        proposal,
        Decimal("1500.00"),
        dt.date(2027, 5, 31),
    )
    await rep_context.close()
    await watch_context.close()


async def test_cancel_restores_card_for_user_only(browser, server) -> None:
    pipeline = await ruled_pipeline()
    first, proposal = pipeline["stages"][:2]
    # Newest arrivals come first: the dragged card sits between two others.
    rep = await make_user("sales_rep")
    watcher = await make_user("sales_manager")
    await make_deal(pipeline, stage_index=0, owner=rep.id)
    deal_id = await deal_without_amount(pipeline, rep.id)
    await make_deal(pipeline, stage_index=0, owner=rep.id)
    rep_context, rep_page = await signed_in_page(browser, server, rep.email)
    watch_context, watch_page = await signed_in_page(browser, server, watcher.email)
    board = f"/pipelines/{pipeline['id']}"
    await rep_page.goto(board)
    await watch_page.goto(board)
    await wait_live(rep_page)
    await wait_live(watch_page)
    card = f"deal-{deal_id}"
    order_script = (
        "(column) => Array.from(document.querySelector(column).children)"
        ".map((child) => child.id)"
    )
    column = f"#stage-{first}-cards"
    order = await rep_page.evaluate(order_script, column)
    assert order.index(card) == 1
    events_before = await Event.count().where(
        (Event.record_type == "deal") & (Event.record_id == deal_id)
    )

    await drag(rep_page, f"#{card}", f"#stage-{proposal}-cards")
    dialog = rep_page.locator("#stage-entry dialog[open]")
    await dialog.wait_for()
    await dialog.locator("[data-stage-entry-cancel]").click()

    await rep_page.locator("#stage-entry dialog").wait_for(state="detached")
    assert await rep_page.evaluate(order_script, column) == order
    assert await rep_page.locator(f"#stage-{proposal}-cards #{card}").count() == 0

    # Escape cancels too.
    await drag(rep_page, f"#{card}", f"#stage-{proposal}-cards")
    await dialog.wait_for()
    await rep_page.keyboard.press("Escape")
    await rep_page.locator("#stage-entry dialog").wait_for(state="detached")
    assert await rep_page.evaluate(order_script, column) == order

    await watch_page.wait_for_timeout(300)
    assert await watch_page.evaluate(order_script, column) == order
    row = await Deal.select(Deal.stage, Deal.version).where(Deal.id == deal_id).first()
    assert row == {"stage": first, "version": 1}
    assert (
        await Event.count().where(
            (Event.record_type == "deal") & (Event.record_id == deal_id)
        )
        == events_before
    )
    await rep_context.close()
    await watch_context.close()


async def test_dialog_fits_a_phone_screen(browser, server) -> None:
    pipeline = await ruled_pipeline()
    first, proposal = pipeline["stages"][:2]
    rep = await make_user("sales_rep")
    deal_id = await deal_without_amount(pipeline, rep.id)
    context, page = await signed_in_page(browser, server, rep.email)
    await page.set_viewport_size({"width": 375, "height": 667})
    await page.goto(f"/pipelines/{pipeline['id']}")
    await wait_live(page)

    # On a phone the card's stage list is the quicker way to move it.
    await page.select_option(f"#deal-{deal_id} select.move", str(proposal))
    dialog = page.locator("#stage-entry dialog[open]")
    await dialog.wait_for()
    box = await dialog.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 375
    submit = await dialog.locator("button[type=submit]").bounding_box()
    assert submit is not None
    assert submit["y"] + submit["height"] <= 667

    await dialog.locator("[data-stage-entry-cancel]").click()
    await page.locator("#stage-entry dialog").wait_for(state="detached")
    selected = await page.eval_on_selector(
        f"#deal-{deal_id} select.move", "(select) => select.value"
    )
    assert selected == str(first)
    await context.close()
