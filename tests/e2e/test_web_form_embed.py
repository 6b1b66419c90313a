"""The web-to-lead form framed by a page of another origin, in Chromium.

The other origin is a plain HTTP server on a second loopback port, serving
a page with the embed code's iframe and the thank-you page.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from playwright.async_api import Frame, Page

from app.leads.tables import Lead, WebFormSettings
from app.leads.webform_settings import save_settings
from app.workflows.jobs import close_queue
from tests.e2e.conftest import wait_until
from tests.servers import WebServer, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(120),
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free loopback port; yields the site's origin."""
    port = free_port()
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def write_site(folder: Path, form_url: str) -> None:
    (folder / "embed.html").write_text(
        "<!doctype html><title>Partner</title><h1>Partner page</h1>"
        f'<iframe src="{form_url}" title="Contact form" width="480" height="560">'
        "</iframe>"
    )
    (folder / "thanks.html").write_text(
        "<!doctype html><title>Thanks</title><p id=thanks>Thanks from the partner</p>"
    )


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def default_settings() -> AsyncIterator[None]:
    """Put the form back to its defaults, which other tests expect."""
    yield
    await WebFormSettings.delete(force=True)
    await close_queue()


def form_frame(page: Page) -> Frame:
    frames = [frame for frame in page.frames if frame is not page.main_frame]
    assert len(frames) == 1, [frame.url for frame in frames]
    return frames[0]


async def test_framed_form_creates_lead_and_redirects(
    browser, server: WebServer, tmp_path: Path
) -> None:
    form_url = f"{server.url}/forms/lead"
    write_site(tmp_path, form_url)
    email = f"{uuid.uuid4().hex[:10]}@framed.example"

    with static_site(tmp_path) as partner:
        redirect_url = f"{partner}/thanks.html"
        await save_settings(
            {
                "source": "Partner iframe",
                "fields": ["name"],
                "questions": "Budget",
                "redirect_url": redirect_url,
                "allowed_origins": partner,
            },
            None,
        )
        context = await browser.new_context()
        context.set_default_timeout(10_000)
        page = await context.new_page()
        try:
            await page.goto(f"{partner}/embed.html")
            form = page.frame_locator("iframe")
            await form.locator("input[name=email]").fill(email)
            await form.locator("input[name=name]").fill("Fay Framed")
            await form.locator("input[name='answer.Budget']").fill("20k")
            company_fields = await form.locator("input[name=company]").count()
            await form.locator("button[type=submit]").click()
            await wait_until(
                page,
                # Reading the frame's address throws while it shows the form,
                # which is another origin's page.
                "(url) => { try {"
                "  return document.querySelector('iframe').contentWindow"
                "    .location.href === url;"
                "} catch (error) { return false; } }",
                redirect_url,
            )
            thanks = await form_frame(page).locator("#thanks").inner_text()
        finally:
            await context.close()

    lead = await Lead.select().where(Lead.email == email).first()
    assert company_fields == 0
    assert thanks == "Thanks from the partner"
    assert lead is not None
    assert lead["name"] == "Fay Framed"
    assert lead["source"] == "Partner iframe"
    assert lead["status"] == "new"
    assert msgspec.json.decode(lead["answers"]) == {"Budget": "20k"}


async def test_unlisted_origin_cannot_frame_form(
    browser, server: WebServer, tmp_path: Path
) -> None:
    write_site(tmp_path, f"{server.url}/forms/lead")

    with static_site(tmp_path) as partner:
        await save_settings(
            {
                "source": "Partner iframe",
                "fields": ["name"],
                "allowed_origins": "https://www.example.com",
            },
            None,
        )
        context = await browser.new_context()
        context.set_default_timeout(10_000)
        page = await context.new_page()
        try:
            await page.goto(f"{partner}/embed.html")
            await page.wait_for_load_state("load")
            frame = form_frame(page)
            email_inputs = await frame.locator("input[name=email]").count()
        finally:
            await context.close()

    assert email_inputs == 0
