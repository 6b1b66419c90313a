"""The API docs page in headless Chromium: Swagger UI renders the API's routes
under the page's Content Security Policy, with no violation reported."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.servers import WebServer

pytestmark = pytest.mark.e2e

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


async def test_docs_page_renders_routes(browser: Browser, server: WebServer) -> None:
    context = await browser.new_context(base_url=server.url)
    context.set_default_timeout(15_000)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto("/api/v1/docs")
    await page.wait_for_selector(".opblock-summary-path")
    paths = await page.locator(".opblock-summary-path").all_inner_texts()

    assert any("/api/v1/deals" in path for path in paths)
    assert any("/api/v1/contacts" in path for path in paths)
    assert await page.evaluate("window.__violations") == []
    assert errors == []
    await context.close()
