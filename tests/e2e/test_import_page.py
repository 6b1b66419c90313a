"""Importing from the browser: a real arq worker runs it, the page shows progress."""

from __future__ import annotations

import pytest

from app.deals.tables import Deal
from tests.conftest import datasets_dir
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_user
from tests.servers import worker_process

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.datasets,
    pytest.mark.asyncio(loop_scope="session"),
]

MAVEN_FILES = ("accounts.csv", "products.csv", "sales_teams.csv", "sales_pipeline.csv")


async def test_upload_imports_with_live_progress(browser, server) -> None:
    folder = datasets_dir("crm_sales_opportunities")
    user = await make_user("admin")
    context, page = await signed_in_page(browser, server, user.email)

    with worker_process():
        await page.goto("/import")
        await page.select_option("select[name=source]", "maven")
        await page.set_input_files(
            "input[name=files]", [str(folder / name) for name in MAVEN_FILES]
        )
        await page.click("main button[type=submit]")
        await page.wait_for_url("**/import/*")
        await page.evaluate(
            "window.pushed = 0;"
            "document.addEventListener('htmx:wsAfterMessage', () => window.pushed++)"
        )
        await wait_live(page)

        # The progress section is replaced by pushed fragments until it is done.
        await page.locator("[data-state=done]").wait_for(timeout=60_000)

    assert await page.evaluate("window.pushed") >= 1
    assert await page.text_content(".state") == "done"
    done = await page.get_attribute("progress", "value")
    total = await page.get_attribute("progress", "max")
    assert done == total == "8927"
    assert await Deal.count().where(Deal.external_key.like("maven:%")) == 8800
    await context.close()
