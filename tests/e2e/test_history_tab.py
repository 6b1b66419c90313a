"""A deal page's History tab in headless Chromium."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.deals.service import update_deal
from app.merge import Edit
from tests.e2e.conftest import signed_in_page
from tests.factories import make_deal, make_pipeline, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_history_tab_lists_changes_and_pages(browser, server) -> None:
    editor = await make_user("admin", name="Ines Editor")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="0", name="Crane lease")
    # 21 changes: one more than the tab's first page.
    for step in range(20):
        await update_deal(
            deal_id, {"amount": Edit(Decimal(step), Decimal(step + 1))}, editor.id
        )
    await update_deal(deal_id, {"name": Edit("Crane lease", "Crane hire")}, editor.id)
    context, page = await signed_in_page(browser, server, editor.email)
    await page.goto(f"/deals/{deal_id}")
    slug = f"deal-{deal_id}"
    history = page.locator(f"#panel-history-{slug}")
    entries = history.locator(".audit-entry")

    await page.click(f"#tab-history-{slug}")
    await entries.first.wait_for()

    assert await page.locator(f"#panel-edit-{slug}").is_hidden()
    assert await page.get_attribute(f"#tab-history-{slug}", "aria-selected") == "true"
    newest = entries.first
    assert "Ines Editor" in await newest.locator("header").inner_text()
    assert await newest.locator('[data-field="name"] .before').inner_text() == (
        "Crane lease"
    )
    assert await newest.locator('[data-field="name"] .after').inner_text() == (
        "Crane hire"
    )
    assert await entries.count() == 20

    await history.get_by_text("Older changes").click()
    await entries.nth(20).wait_for()

    assert await entries.count() == 21
    assert await history.get_by_text("Older changes").count() == 0
    oldest = entries.nth(20)
    assert await oldest.locator('[data-field="amount"] .after').inner_text() == "1"

    await page.click(f"#tab-edit-{slug}")
    assert await page.locator(f"#panel-edit-{slug}").is_visible()
    assert await history.is_hidden()
    await context.close()
