"""The ticket page's reply form in headless Chromium: template, send, timeline."""

from __future__ import annotations

import uuid

import pytest

from app.contacts.tables import Contact
from app.email.templates import save_template
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_ticket, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_reply_from_template(browser, server) -> None:
    admin = await make_user("admin")
    address = f"robin-{uuid.uuid4().hex[:8]}@acme.test"
    rows = await Contact.insert(
        Contact(first_name="Robin", last_name="Reader", email=address)
    ).returning(Contact.id)
    ticket_id = await make_ticket("open", requester=rows[0]["id"], subject="No sound")
    name = f"Sound {uuid.uuid4().hex[:6]}"
    await save_template(
        None, name, "Hi {{ contact.first_name }}, about {{ ticket.subject }}.", admin.id
    )
    context, page = await signed_in_page(browser, server, admin.email)
    try:
        await page.goto(f"/tickets/{ticket_id}")
        await wait_live(page)

        await page.select_option("#reply-template", label=name)
        await page.locator("#reply-body").filter(has_text="Hi Robin").wait_for()
        filled = await page.input_value("#reply-body")
        await page.fill("#reply-body", filled + " It is fixed.")
        await page.click("#reply button[type=submit]")
        await page.locator("#reply .saved").wait_for()
        comment = page.locator("#comments .comment", has_text="It is fixed.")
        await comment.wait_for()
        body = await page.input_value("#reply-body")
        shown = await comment.count()
    finally:
        await context.close()

    assert filled == "Hi Robin, about No sound."
    assert body == ""
    assert shown == 1
