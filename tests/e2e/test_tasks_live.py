"""A task's done checkbox on a ticket page updates another viewer's page live."""

from __future__ import annotations

import datetime as dt

import pytest

from app.tasks.service import create_task
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_team, make_ticket, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_done_checkbox_reaches_other_viewer(browser, server) -> None:
    team = await make_team()
    agent = await make_user("support_agent", name="Tia Agent", team=team)
    watcher = await make_user("support_agent", name="Wes Watcher", team=team)
    ticket_id = await make_ticket("open", assignee=agent.id, team=team)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    task_id = await create_task(
        "ticket", ticket_id, "Post the spare part", agent.id, due, None
    )
    agent_context, agent_page = await signed_in_page(browser, server, agent.email)
    watcher_context, watcher_page = await signed_in_page(browser, server, watcher.email)
    try:
        await agent_page.goto(f"/tickets/{ticket_id}")
        await watcher_page.goto(f"/tickets/{ticket_id}")
        await wait_live(agent_page)
        await wait_live(watcher_page)
        box = f"#task-{task_id} input[name=done]"
        assert not await watcher_page.is_checked(box)

        await agent_page.check(box)

        await watcher_page.locator(f"#task-{task_id}.done").wait_for(timeout=5000)
        assert await watcher_page.is_checked(box)
        await agent_page.locator(f"#task-{task_id}.done").wait_for(timeout=5000)

        await watcher_page.uncheck(box)

        await agent_page.locator(f"#task-{task_id}:not(.done)").wait_for(timeout=5000)
        assert not await agent_page.is_checked(box)
    finally:
        await agent_context.close()
        await watcher_context.close()
