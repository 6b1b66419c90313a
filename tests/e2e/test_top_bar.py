"""The top bar in Chromium: one row on a desktop for every built-in role, and
on a phone, where the main menu opens from a Menu button. The user's own
links open from their avatar, by mouse or keyboard, with or without
JavaScript."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth.tables import ROLES
from tests.e2e.conftest import signed_in_page
from tests.factories import make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DESKTOP = {"width": 1280, "height": 800}
WIDE = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
# One row of the bar: its padding and a 2.4rem search box, at 15px.
ONE_ROW_HEIGHT = 60
# The boxes of the bar's visible items and of the bar itself. The items
# share one row when every item starts above the bottom of every other.
MEASURE = """() => {
  const bar = document.querySelector("header.top");
  const items = Array.from(bar.children)
    .filter((item) => item.getClientRects().length > 0)
    .map((item) => item.getBoundingClientRect());
  return {
    height: bar.getBoundingClientRect().height,
    items: items.length,
    lowestTop: Math.max(...items.map((box) => box.top)),
    highestBottom: Math.min(...items.map((box) => box.bottom)),
  };
}"""
FOCUSED_HREF = "document.activeElement.getAttribute('href')"
FOCUSED_CLASS = "document.activeElement.parentElement.className"


async def measure(page: Any) -> dict[str, float]:
    bar: dict[str, float] = await page.evaluate(MEASURE)
    return bar


async def test_top_bar_one_row_on_desktop(browser, server) -> None:
    team = await make_team()
    bars = {}
    menu_buttons = {}
    for role in ROLES:
        user = await make_user(role, team=team)
        context, page = await signed_in_page(browser, server, user.email)
        await page.set_viewport_size(DESKTOP)
        await page.goto("/tasks")
        bars[role] = await measure(page)
        menu_buttons[role] = await page.locator(".nav-menu summary").is_visible()
        await context.close()

    for role, bar in bars.items():
        assert bar["lowestTop"] < bar["highestBottom"], role
        assert bar["height"] <= ONE_ROW_HEIGHT, role
        assert not menu_buttons[role], role


async def test_admin_top_bar_at_1280_and_1400(browser, server) -> None:
    admin = await make_user("admin")
    context, page = await signed_in_page(browser, server, admin.email)
    bars = {}
    for size in (DESKTOP, WIDE):
        await page.set_viewport_size(size)
        await page.goto("/tasks")
        bars[size["width"]] = await measure(page)
    audit_link = await page.locator(".main-nav a[href='/admin/audit']").is_visible()
    sign_out = page.locator(".menu-panel button", has_text="Sign out")
    sign_out_hidden = await sign_out.is_hidden()

    await page.locator(".user-menu summary").click()
    await sign_out.wait_for()
    panel = await page.locator(".menu-panel").bounding_box()
    await sign_out.click()
    await page.wait_for_url("**/login**")

    for width, bar in bars.items():
        assert bar["lowestTop"] < bar["highestBottom"], width
        assert bar["height"] <= ONE_ROW_HEIGHT, width
    assert audit_link
    assert sign_out_hidden
    assert panel is not None
    assert panel["x"] + panel["width"] <= WIDE["width"]
    await context.close()


async def test_top_bar_on_phone(browser, server) -> None:
    admin = await make_user("admin")
    context, page = await signed_in_page(browser, server, admin.email)
    await page.set_viewport_size(PHONE)
    await page.goto("/tasks")
    bar = await measure(page)
    page_width = await page.evaluate("document.documentElement.scrollWidth")
    wide_menu_hidden = await page.locator(".main-nav").is_hidden()
    menu = page.locator(".nav-menu summary")

    await menu.focus()
    await page.keyboard.press("Enter")
    pipeline_link = page.locator(".nav-menu-links a[href='/pipelines']")
    await pipeline_link.wait_for()
    await page.keyboard.press("Tab")
    first_focused = await page.evaluate(FOCUSED_HREF)
    open_bar = await measure(page)
    links_box = await page.locator(".nav-menu-links").bounding_box()
    await page.keyboard.press("Escape")
    await pipeline_link.wait_for(state="hidden")
    focus_after_escape = await page.evaluate(FOCUSED_CLASS)

    await page.locator(".user-menu summary").focus()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    security_focused = await page.evaluate(FOCUSED_HREF)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/security")

    assert bar["height"] <= ONE_ROW_HEIGHT
    assert bar["lowestTop"] < bar["highestBottom"]
    assert page_width <= PHONE["width"]
    assert wide_menu_hidden
    assert first_focused == "/pipelines"
    assert open_bar["height"] == bar["height"]
    assert links_box is not None
    assert links_box["x"] >= 0
    assert links_box["x"] + links_box["width"] <= PHONE["width"]
    assert "nav-menu" in focus_after_escape
    assert security_focused == "/security"
    await context.close()


async def test_top_bar_menus_open_without_scripts(browser, server) -> None:
    admin = await make_user("admin")
    context, page = await signed_in_page(browser, server, admin.email, scripts=False)
    await page.set_viewport_size(PHONE)
    await page.goto("/tasks")

    await page.locator(".nav-menu summary").click()
    leads = page.locator(".nav-menu-links a[href='/leads']")
    await leads.wait_for()
    await page.locator(".user-menu summary").click()
    availability = page.locator(".menu-panel a[href='/availability']")
    await availability.wait_for()
    await availability.click()
    await page.wait_for_url("**/availability")

    await context.close()
