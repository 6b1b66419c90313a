"""The campaign page's counts follow a real worker's sending without a reload."""

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
    smtp_server,  # noqa: F401 (a fixture)
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
