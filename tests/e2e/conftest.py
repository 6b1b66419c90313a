"""Headless Chromium, driven by Playwright, against a real web server."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.factories import PASSWORD
from tests.servers import WebServer, web_server

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not path:
        if os.environ.get("CRM_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium not found; install Debian's chromium package")
        pytest.skip(
            "Chromium not found; install Debian's chromium package or set CHROMIUM_PATH"
        )
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def signed_in_page(
    browser: Browser, server: WebServer, email: str
) -> tuple[BrowserContext, Page]:
    """Open a new browser context (its own cookies) and sign in."""
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1400, "height": 900}
    )
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    return context, page


async def wait_live(page: Page) -> None:
    """Wait until the page's websocket is open."""
    await page.wait_for_function("document.body.dataset.live === 'open'")
