"""Presence fragments reach only pages that have a place for them."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from app.imports.tables import ImportJob
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_deal, make_pipeline, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

NO_TARGET = "htmx:oobErrorNoTarget"
# Longer than the presence tracker's batching of writes and pushes.
SETTLE_MS = 1500


def collect_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if NO_TARGET in message.text else None
        ),
    )
    return errors


async def test_pages_without_presence_places_get_no_fragments(browser, server) -> None:
    pipeline = await make_pipeline()
    admin = await make_user("admin")
    manager = await make_user("sales_manager")
    rows = await ImportJob.insert(
        ImportJob(source="tickets", filenames=["a.csv"], user=admin.id, state="done")
    ).returning(ImportJob.id)
    job_id = rows[0]["id"]
    observed, observer = await signed_in_page(browser, server, admin.email)
    errors = collect_errors(observer)
    other, other_page = await signed_in_page(browser, server, manager.email)

    # Each page is opened, then someone else opens a page on the same topic.
    visits = [
        ("/leads", "/leads"),
        (f"/forecast?pipeline={pipeline['id']}", f"/pipelines/{pipeline['id']}"),
        ("/forecast", f"/pipelines/{pipeline['id']}"),
        (f"/import/{job_id}", f"/import/{job_id}"),
    ]
    other_admin_ctx, other_admin = await signed_in_page(
        browser, server, (await make_user("admin")).email
    )
    for path, joined in visits:
        await observer.goto(path)
        await wait_live(observer)
        joiner = other_admin if joined.startswith("/import") else other_page
        await joiner.goto(joined)
        await wait_live(joiner)
        await observer.wait_for_timeout(SETTLE_MS)

    assert errors == []
    for context in (observed, other, other_admin_ctx):
        await context.close()


async def test_read_only_deal_page_has_editing_and_typing_places(
    browser, server
) -> None:
    team = await make_team()
    pipeline = await make_pipeline()
    manager = await make_user("sales_manager", team=team)
    agent = await make_user("support_agent", team=team)
    deal_id = await make_deal(pipeline, owner=manager.id, team=team)
    watching, agent_page = await signed_in_page(browser, server, agent.email)
    errors = collect_errors(agent_page)
    editing, manager_page = await signed_in_page(browser, server, manager.email)

    await agent_page.goto(f"/deals/{deal_id}")
    await wait_live(agent_page)
    await manager_page.goto(f"/deals/{deal_id}")
    await wait_live(manager_page)
    await manager_page.focus("input[name=name]")
    comment = manager_page.locator("textarea[name=body]")
    if await comment.count():
        await comment.type("Hello")
    await wait_until(
        agent_page,
        "(id) => !!document.querySelector("
        "`#presence-deal-${id} [data-user-id]:not([hidden])`)",
        deal_id,
    )
    await agent_page.wait_for_timeout(SETTLE_MS)

    assert errors == []
    await watching.close()
    await editing.close()
