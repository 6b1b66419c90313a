"""Deleting a record from its page in Chromium: the confirmation works with
JavaScript turned off, and other viewers' boards and pages follow live."""

from __future__ import annotations

import pytest

from app.accounts.service import create_account
from app.accounts.tables import Account
from app.contacts.service import create_contact
from app.deals.tables import Deal
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_deal, make_pipeline, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 2000


async def test_deal_deleted_without_script_leaves_others(browser, server) -> None:
    team = await make_team()
    manager = await make_user("sales_manager", name="Mona Manager", team=team)
    agent = await make_user("support_agent")
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, team=team, name="Crane lease")
    kept = await make_deal(pipeline, team=team, name="Crane repair")
    deleting, page = await signed_in_page(browser, server, manager.email, scripts=False)
    board_context, board = await signed_in_page(browser, server, agent.email)
    record_context, record = await signed_in_page(browser, server, agent.email)
    blocked: list[str] = []
    for viewer in (board, record):
        viewer.on(
            "console",
            lambda message: (
                blocked.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
    await board.goto(f"/pipelines/{pipeline['id']}")
    await record.goto(f"/deals/{deal_id}")
    await wait_live(board)
    await wait_live(record)
    assert await board.locator(f"#deal-{deal_id}").count() == 1

    await page.goto(f"/deals/{deal_id}")
    button = page.get_by_role("button", name="Delete deal")
    assert not await button.is_visible()
    await page.get_by_text("Delete this deal").click()
    assert "Delete “Crane lease” for everyone?" in await page.text_content(
        "#delete-deal"
    )
    await button.click()

    await page.wait_for_url(f"**/pipelines/{pipeline['id']}")
    assert await page.locator(f"#deal-{deal_id}").count() == 0
    assert await page.locator(f"#deal-{kept}").count() == 1
    await board.locator(f"#deal-{deal_id}").wait_for(
        state="detached", timeout=LIVE_TIMEOUT_MS
    )
    assert await board.locator(f"#deal-{kept}").count() == 1
    notice = record.get_by_role("status").filter(has_text="was deleted")
    await notice.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert await notice.text_content() == (
        "This deal was deleted by Mona Manager. Back to the pipeline"
    )
    await record.get_by_role("link", name="Back to the pipeline").click()
    await record.wait_for_url(f"**/pipelines/{pipeline['id']}")
    assert await Deal.exists().where(Deal.id == deal_id) is False
    assert blocked == []
    for context in (deleting, board_context, record_context):
        await context.close()


async def test_account_with_contacts_shows_reason(browser, server) -> None:
    admin = await make_user()
    account_id = await create_account({"name": "Still Needed"}, admin.id)
    await create_contact(
        {"first_name": "Ola", "last_name": "Linked", "account": str(account_id)},
        admin.id,
    )
    context, page = await signed_in_page(browser, server, admin.email)

    await page.goto(f"/accounts/{account_id}")
    await page.get_by_text("Delete this account").click()

    reason = page.locator("#delete-account [role=alert]")
    assert await reason.text_content() == (
        f"Account {account_id} is still referred to by 1 contacts. Delete them "
        "or move them to another account first."
    )
    assert await page.get_by_role("button", name="Delete account").count() == 0
    assert await Account.exists().where(Account.id == account_id)
    await context.close()
