"""The campaign page in a browser: the form rejects single-brace placeholders,
the page previews the message and sends a test, and its counts follow a
real worker's sending without a reload."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.campaigns.service import schedule_campaign
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_user
from tests.integration.test_campaigns import (
    SmtpServer,
    campaign_for,
    make_contacts,
    segment_for,
    smtp_server,  # noqa: F401 (a fixture)
    wait_for,
)
from tests.servers import worker_process

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RECIPIENTS = 6
SENT = ".campaign-progress .sent"


async def test_progress_moves_live(browser, server, smtp_server: SmtpServer) -> None:  # noqa: F811
    marker = uuid.uuid4().hex[:10]
    await make_contacts(marker, RECIPIENTS)
    # Two a second, so the page shows several counts on the way.
    campaign_id = await campaign_for(marker, rate=120)
    manager = await make_user("sales_manager")
    context, page = await signed_in_page(browser, server, manager.email)
    await page.goto(f"/campaigns/{campaign_id}")
    await wait_live(page)
    await page.evaluate("() => { window.notReloaded = true; }")
    assert await page.text_content(SENT) == "0"

    seen: set[str] = set()
    with worker_process({"SMTP_URL": smtp_server.url}):
        await schedule_campaign(campaign_id, None, manager.id)
        async with asyncio.timeout(60):
            while True:
                text = (await page.text_content(SENT) or "").strip()
                seen.add(text)
                state = await page.get_attribute(".campaign-progress", "data-state")
                if state == "sent" and text == str(RECIPIENTS):
                    break
                await asyncio.sleep(0.05)

    await wait_until(page, "() => window.notReloaded === true")
    progress = await page.get_attribute(".campaign-progress progress", "value")
    assert progress == str(RECIPIENTS)
    # Counts in between arrived one by one, not only the final one.
    assert len(seen - {"0", str(RECIPIENTS)}) >= 2, seen
    assert len(smtp_server.inbox.messages) == RECIPIENTS
    await context.close()


async def test_form_preview_and_test_send(
    browser,
    server,
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    marker = uuid.uuid4().hex[:10]
    await make_contacts(marker, 3)
    manager = await make_user("sales_manager")
    context, page = await signed_in_page(browser, server, manager.email)
    condition = segment_for(marker)["items"][0]

    await page.goto("/campaigns/new")
    await page.fill("input[name=name]", f"Braces {marker}")
    await page.locator("input[name=condition_field]").first.fill(condition["field"])
    await page.locator("select[name=condition_op]").first.select_option(condition["op"])
    await page.locator("input[name=condition_value]").first.fill(condition["value"])
    await page.fill("input[name=subject]", "Hello {first_name}")
    await page.fill("textarea[name=body]", "Hi {{ recipient.first_name }}, news.")
    await page.click("main form button[type=submit]")

    alert = page.locator(".form-error")
    await alert.wait_for()
    assert await alert.get_attribute("data-field") == "subject"
    message = await alert.text_content() or ""
    assert "'{first_name}'" in message
    assert "write {{ recipient.first_name }}" in message
    assert await page.input_value("input[name=subject]") == "Hello {first_name}"
    assert (
        await page.input_value("textarea[name=body]")
        == "Hi {{ recipient.first_name }}, news."
    )

    await page.fill("input[name=subject]", "Hello {{ recipient.first_name }}")
    await page.click("main form button[type=submit]")
    await page.wait_for_url(lambda url: "/campaigns/new" not in url)
    subject = page.locator(".campaign-preview .preview-subject")
    assert await subject.text_content() == "Hello Pat0"
    body = await page.locator(".campaign-preview .preview-body").text_content()
    assert (body or "").startswith("Hi Pat0, news.")

    with worker_process({"SMTP_URL": smtp_server.url}):
        await page.click("text=Send a test to me")
        notice = page.locator("p.notice")
        await notice.wait_for()
        assert manager.email in (await notice.text_content() or "")

        async def arrived() -> bool:
            return bool(smtp_server.inbox.to(manager.email))

        await wait_for(arrived, seconds=60)

    (sent,) = smtp_server.inbox.to(manager.email)
    assert sent["Subject"] == "[Test] Hello Pat0"
    assert await page.text_content(SENT) == "0"
    await context.close()
