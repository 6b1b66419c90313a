"""The dry run form on a rule's page, in Chromium, with a simulated change."""

from __future__ import annotations

import uuid

import pytest

from app.tickets.service import create_ticket
from app.workflows.service import save_rule
from app.workflows.tables import WorkflowRule
from tests.e2e.conftest import signed_in_page, wait_until
from tests.factories import make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_dry_run_form_simulates_change(browser, server) -> None:
    admin = await make_user("admin")
    team_id = await make_team()
    agent = await make_user("support_agent", team=team_id)
    rule_id = await save_rule(
        None,
        "ticket",
        f"Escalate {uuid.uuid4().hex[:8]}",
        {
            "trigger": {"kind": "field_changed", "field": "priority"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "priority",
                        "op": "changed_to",
                        "value": "urgent",
                    },
                    {
                        "type": "condition",
                        "field": "actor.team",
                        "op": "equals",
                        "value": str(team_id),
                    },
                ],
            },
            "actions": [{"kind": "add_tag", "tag": "escalated"}],
        },
        None,
    )
    ticket_id = await create_ticket({"subject": "Printer", "priority": "low"}, None)
    context, page = await signed_in_page(browser, server, admin.email)
    result = "#dry-run-result"
    try:
        await page.goto(f"/admin/workflows/{rule_id}")
        await page.fill("input[name=record_id]", str(ticket_id))
        await page.click("#dry-run-form button[type=submit]")
        await wait_until(
            page, "(s) => document.querySelector(s).innerText.includes('hold')", result
        )
        plain = await page.inner_text(result)

        await page.select_option("select[name=change_field]", "priority")
        await page.fill("input[name=change_from]", "low")
        await page.fill("input[name=change_to]", "urgent")
        await page.fill("input[name=actor_id]", str(agent.id))
        await page.click("#dry-run-form button[type=submit]")
        await wait_until(
            page,
            "(s) => document.querySelector(s).innerText.includes('Simulated')",
            result,
        )
        simulated = await page.inner_text(result)
    finally:
        await context.close()
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)

    assert "The conditions do not hold" in plain
    assert "Simulated change" not in plain
    assert "The conditions hold" in simulated
    assert "Simulated change: priority from low to urgent" in simulated
    assert f"(user {agent.id})" in simulated
    assert "The trigger fires on this change." in simulated
