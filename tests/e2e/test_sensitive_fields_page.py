"""The sensitive-fields admin page in Chromium: a switch starts the job and
the page follows its progress until the field is encrypted."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from app.encryption.keyring import is_encrypted
from tests.e2e.conftest import signed_in_page
from tests.factories import make_ticket, make_user
from tests.servers import WebServer, web_server, worker_process

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ROW = "#field-ticket-description"
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running, worker_process():
        yield running


async def stored_description(ticket_id: int) -> str:
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        return await connection.fetchval(
            "SELECT description FROM ticket WHERE id = $1", ticket_id
        )
    finally:
        await connection.close()


async def test_switch_encrypts_with_progress(browser, server) -> None:
    description = f"Printer on fire {uuid.uuid4().hex[:8]}"
    ticket_id = await make_ticket(description=description)
    admin = await make_user("admin")
    context, page = await signed_in_page(browser, server, admin.email)

    await page.goto("/admin/sensitive-fields")
    assert "no longer match" in await page.inner_text("main")
    switch = page.locator(f"{ROW} button[role=switch]")
    assert await switch.get_attribute("aria-checked") == "false"

    await switch.click()
    await page.wait_for_url("**/admin/sensitive-fields")
    state = page.locator(f"{ROW} .state")
    assert "Encrypting" in await state.inner_text()
    # The page reloads only the table while the job runs, so a value set
    # in the window now survives until the job ends.
    await page.evaluate("window.sameDocument = true")
    await state.filter(has_text="Encrypted").wait_for(timeout=JOB_TIMEOUT_MS)
    assert await page.evaluate("window.sameDocument === true")
    assert "Encrypting" not in await state.inner_text()
    assert await switch.get_attribute("aria-checked") == "true"
    assert is_encrypted(await stored_description(ticket_id))

    await page.goto(f"/tickets/{ticket_id}")
    assert description in await page.inner_text("main")

    await page.goto("/admin/sensitive-fields")
    await page.locator(f"{ROW} button[role=switch]").click()
    await page.wait_for_url("**/admin/sensitive-fields")
    await (
        page.locator(f"{ROW} .state")
        .filter(has_text="Plaintext")
        .wait_for(timeout=JOB_TIMEOUT_MS)
    )
    assert await stored_description(ticket_id) == description
    await context.close()
