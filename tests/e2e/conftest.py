"""Headless Chromium, driven by Playwright, against a real web server."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

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
    browser: Browser, server: WebServer, email: str, scripts: bool = True
) -> tuple[BrowserContext, Page]:
    """Open a new browser context (its own cookies) and sign in.

    ``scripts`` False opens the pages with JavaScript turned off.
    """
    context = await browser.new_context(
        base_url=server.url,
        viewport={"width": 1400, "height": 900},
        java_script_enabled=scripts,
    )
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    return context, page


async def wait_until(
    page: Page, expression: str, arg: Any = None, timeout_ms: float = 10_000
) -> None:
    """Poll ``expression`` in the page until it returns a truthy value.

    ``page.wait_for_function`` evaluates its predicate with ``eval`` inside
    the page, which the site's Content-Security-Policy blocks, while
    ``page.evaluate`` is not subject to it (Playwright issue 7395).
    """
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            # Polling is the point: the page has no event to wait on.
            while not await page.evaluate(expression, arg):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(
            f"{expression!r} still false after {timeout_ms:.0f} ms"
        ) from None


async def wait_live(page: Page) -> None:
    """Wait until the page's websocket is open."""
    await wait_until(page, "() => document.body.dataset.live === 'open'")


async def drag(
    page: Page,
    source: str,
    target: str,
    while_held: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Drag ``source`` into the ``target`` list the way a person does.

    SortableJS samples the pointer on a timer, so the pointer moves in small
    steps with short pauses and rests over the target before it is released.
    ``while_held`` runs with the card over the target, before the release.
    """
    source_box = await page.locator(source).bounding_box()
    target_box = await page.locator(target).bounding_box()
    assert source_box is not None, f"{source} is not visible"
    assert target_box is not None, f"{target} is not visible"

    start_x, start_y = source_box["x"] + source_box["width"] / 2, source_box["y"] + 12
    end_x, end_y = (
        target_box["x"] + target_box["width"] / 2,
        target_box["y"] + target_box["height"] - 10,
    )
    await page.mouse.move(start_x, start_y)
    await page.mouse.down()
    steps = 20
    for step in range(1, steps + 1):
        await page.mouse.move(
            start_x + (end_x - start_x) * step / steps,
            start_y + (end_y - start_y) * step / steps,
        )
        await page.wait_for_timeout(25)
    await page.wait_for_timeout(150)
    if while_held is not None:
        await while_held()
    await page.mouse.up()
