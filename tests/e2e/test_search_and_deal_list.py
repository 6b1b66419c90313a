"""The top bar's search and the deal list in Chromium, on a phone-sized screen:
the dropdown of first hits as the user types, Enter for the search page, and
deal rows that filter, change and leave the list live."""

from __future__ import annotations

import uuid

import pytest

from tests.browserless import Session
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import (
    make_account,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PHONE = {"width": 390, "height": 844}
PAGE_WIDTH = "document.documentElement.scrollWidth"


def tag() -> str:
    return f"e2e{uuid.uuid4().hex[:10]}"


async def test_search_dropdown_on_phone(browser, server) -> None:
    admin = await make_user("admin")
    word = tag()
    account = await make_account(name=f"Harbour {word}")
    ticket = await make_ticket(subject=f"Harbour crane {word}")
    context, page = await signed_in_page(browser, server, admin.email)
    await page.set_viewport_size(PHONE)
    await page.goto("/tasks")
    box = page.locator("#top-search-q")

    await box.press_sequentially(word, delay=20)
    hit = page.locator(f'#top-search-hits a[href="/accounts/{account}"]')
    await hit.wait_for()
    hits_box = await page.locator("#top-search-hits").bounding_box()
    width = await page.evaluate(PAGE_WIDTH)
    ticket_hit = page.locator(f'#top-search-hits a[href="/tickets/{ticket}"]')
    ticket_text = await ticket_hit.inner_text()

    await box.press("ArrowDown")
    focused = await page.evaluate("document.activeElement.getAttribute('href')")
    await page.keyboard.press("Escape")
    await wait_until(page, "() => !document.querySelector('#top-search-hits a')")
    await box.press("Enter")
    await page.wait_for_url(f"**/search?q={word}")
    found = page.locator(f'#search-results a[href="/accounts/{account}"]')
    await found.wait_for()
    result_width = await page.evaluate(PAGE_WIDTH)
    top_box_after = await box.input_value()

    assert hits_box is not None
    assert hits_box["x"] >= 0
    assert hits_box["x"] + hits_box["width"] <= PHONE["width"]
    assert width <= PHONE["width"]
    assert ticket_text.startswith(f"#T-{ticket} ")
    assert focused == f"/accounts/{account}"
    assert result_width <= PHONE["width"]
    assert top_box_after == word
    await context.close()


async def test_deal_list_on_phone(browser, server) -> None:
    team = await make_team()
    manager = await make_user("sales_manager", team=team)
    admin = await make_user("admin")
    word = tag()
    pipeline = await make_pipeline()
    open_deal = await make_deal(pipeline, 0, name=f"Open {word}", team=team)
    won_deal = await make_deal(pipeline, 2, name=f"Won {word}", team=team)
    context, page = await signed_in_page(browser, server, manager.email)
    await page.set_viewport_size(PHONE)
    await page.goto(f"/pipelines/{pipeline['id']}")

    await page.locator(".view-toggle a", has_text="List").click()
    await page.wait_for_url(f"**/deals?pipeline={pipeline['id']}")
    await page.goto(f"/deals?q={word}")
    await page.locator(f"#deal-row-{open_deal}").wait_for()
    await page.locator(f"#deal-row-{won_deal}").wait_for()
    width = await page.evaluate(PAGE_WIDTH)
    await page.select_option("select[name=status]", "open")
    await page.wait_for_url("**status=open**")
    await page.locator(f"#deal-row-{open_deal}").wait_for()
    won_rows = await page.locator(f"#deal-row-{won_deal}").count()
    await wait_live(page)

    editor = Session(server.url)
    await editor.sign_in(admin.email)
    renamed = f"Renamed {word}"
    response = await editor.post(
        f"/deals/{open_deal}", {"name": renamed, "base_name": f"Open {word}"}
    )
    await editor.close()
    await wait_until(
        page,
        "([id, name]) => document.getElementById(id)?.textContent.includes(name)",
        [f"deal-row-{open_deal}", renamed],
    )
    filtered_width = await page.evaluate(PAGE_WIDTH)

    assert width <= PHONE["width"]
    assert won_rows == 0
    assert response.status_code == 200
    assert filtered_width <= PHONE["width"]
    await context.close()


async def test_deal_leaves_filtered_list_live(browser, server) -> None:
    manager = await make_user("sales_manager", team=await make_team())
    admin = await make_user("admin")
    word = tag()
    pipeline = await make_pipeline()
    staying = await make_deal(pipeline, name=f"Staying {word}")
    leaving = await make_deal(pipeline, name=f"Leaving {word}")
    context, page = await signed_in_page(browser, server, manager.email)
    await page.set_viewport_size(PHONE)
    await page.goto(f"/deals?q={word}")
    count = page.locator("#deal-results .count")
    count_before = await count.inner_text()
    await wait_live(page)

    editor = Session(server.url)
    await editor.sign_in(admin.email)
    response = await editor.post(
        f"/deals/{leaving}", {"name": f"Left {tag()}", "base_name": f"Leaving {word}"}
    )
    await editor.close()
    await page.locator(f"#deal-row-{leaving}").wait_for(state="detached")
    await wait_until(
        page,
        "(text) => document.querySelector('#deal-results .count')"
        "?.textContent.startsWith(text)",
        f"1 deal matching “{word}”",
    )
    staying_rows = await page.locator(f"#deal-row-{staying}").count()

    assert response.status_code == 200
    assert count_before.startswith(f"2 deals matching “{word}”")
    assert staying_rows == 1
    await context.close()
