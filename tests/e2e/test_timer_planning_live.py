"""A time-based rule's page in Chromium: the counts, then the planning live."""

from __future__ import annotations

import uuid

import pytest

from app.tickets.service import create_ticket
from app.workflows.jobs import close_queue
from app.workflows.service import save_rule
from app.workflows.tables import WorkflowRule
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_user
from tests.integration.test_timer_planning import follow_up_rule
from tests.servers import worker_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PLAN_STATE = "(s) => document.querySelector(s).dataset.state"


async def test_rule_page_counts_and_shows_planning(browser, server) -> None:
    marker = uuid.uuid4().hex[:10]
    admin = await make_user("admin")
    for n in range(3):
        await create_ticket({"subject": f"Old {marker} {n}"}, None)
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 60), None
    )
    context, page = await signed_in_page(browser, server, admin.email)
    panel = f"#timer-plan-{rule_id}"
    try:
        await page.goto(f"/admin/workflows/{rule_id}")
        await page.click("#count-timers")
        await wait_until(
            page,
            "(s) => document.querySelector(s).innerText.includes('It matches 3')",
            "#timer-counts",
        )
        counts = await page.inner_text("#timer-counts")

        await page.click("#toggle-rule")
        await page.wait_for_load_state()
        await wait_live(page)
        queued_state = await page.evaluate(PLAN_STATE, panel)
        with worker_process():
            await wait_until(
                page, f"(s) => ({PLAN_STATE})(s) === 'done'", panel, timeout_ms=60_000
            )
        done_text = await page.inner_text(panel)
    finally:
        await context.close()
        await close_queue()
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)

    assert "It matches 3 existing tickets now; 0 of their timers" in counts
    assert queued_state == "queued"
    assert "3 timers set, 0 of them due at once." in done_text
