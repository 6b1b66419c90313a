"""Which version of an edited rule its timers run.

A timer stores the rule version it was set under. Saving a time-based rule
queues the planning job, which sets its pending timers again under the new
version, while runs that already happened keep theirs. A scheduled rule's
timer is replaced on every save, so its next run uses the new version.
Disabling a rule drops its pending timers. Enabling a rule saves its
definition as a new version, so a rule saved once and enabled is at 2.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from app.tickets.service import create_ticket
from app.workflows import clock
from app.workflows.planning import get_plan, run_plan
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowTimer
from app.workflows.timers import fire_due_timers

pytestmark = pytest.mark.timeout(60)


def stale_definition(marker: str, tag: str, after: str) -> dict[str, Any]:
    return {
        "trigger": {"kind": "time_after", "after": after, "delay_minutes": 30},
        "conditions": {
            "type": "group",
            "items": [
                {
                    "type": "condition",
                    "field": "subject",
                    "op": "contains",
                    "value": marker,
                }
            ],
        },
        "actions": [{"kind": "add_tag", "tag": tag}],
    }


async def pending_timer(rule_id: int) -> dict[str, Any]:
    rows = await WorkflowTimer.raw(
        "SELECT t.*, v.version FROM workflow_timer t "
        "JOIN workflow_rule_version v ON v.id = t.rule_version "
        "WHERE t.rule = {} AND t.fired_at IS NULL",
        rule_id,
    )
    assert len(rows) == 1, rows
    return dict(rows[0])


async def tags_of(ticket_id: int) -> list[str]:
    rows = await RuleRun.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    return list(rows[0]["tags"])


async def fire_after(minutes: int) -> None:
    clock.shift(dt.timedelta(minutes=minutes))
    await fire_due_timers()


async def test_saved_rule_replans_pending_timer(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None, "ticket", "Stale", stale_definition(marker, "v1", "created_at"), None
    )
    rules.append(rule_id)
    await set_enabled(rule_id, True, None)
    ticket_id = await create_ticket({"subject": f"Quiet {marker}"}, None)
    assert (await pending_timer(rule_id))["version"] == 2

    await save_rule(
        rule_id, "ticket", "Stale", stale_definition(marker, "v2", "created_at"), None
    )
    assert (await pending_timer(rule_id))["version"] == 2
    plan = await get_plan(rule_id)
    assert plan is not None
    await run_plan(rule_id, plan["generation"])
    assert (await pending_timer(rule_id))["version"] == 3
    await fire_after(31)

    runs = await RuleRun.select().where(RuleRun.rule == rule_id)
    assert [(run["version"], run["outcome"]) for run in runs] == [(3, "done")]
    assert await tags_of(ticket_id) == ["v2"]


async def test_fired_run_keeps_its_version(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None, "ticket", "Once", stale_definition(marker, "v1", "created_at"), None
    )
    rules.append(rule_id)
    await set_enabled(rule_id, True, None)
    ticket_id = await create_ticket({"subject": f"Quiet {marker}"}, None)
    await fire_after(31)

    await save_rule(
        rule_id, "ticket", "Once", stale_definition(marker, "v2", "created_at"), None
    )

    runs = await RuleRun.select().where(RuleRun.rule == rule_id)
    assert [(run["version"], run["outcome"]) for run in runs] == [(2, "done")]
    assert await tags_of(ticket_id) == ["v1"]


async def test_disabled_rule_drops_pending_timer(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None, "ticket", "Off", stale_definition(marker, "v1", "created_at"), None
    )
    rules.append(rule_id)
    await set_enabled(rule_id, True, None)
    ticket_id = await create_ticket({"subject": f"Quiet {marker}"}, None)

    await set_enabled(rule_id, False, None)
    await fire_after(31)

    assert await RuleRun.count().where(RuleRun.rule == rule_id) == 0
    assert await tags_of(ticket_id) == []
    pending = await WorkflowTimer.count().where(
        (WorkflowTimer.rule == rule_id) & WorkflowTimer.fired_at.is_null()
    )
    assert pending == 0


async def test_scheduled_rule_edit_replaces_timer(rules: list[int]) -> None:
    def daily(hour: int, tag: str) -> dict[str, Any]:
        return {
            "trigger": {
                "kind": "scheduled",
                "schedule": {"every": "daily", "hour": hour, "minute": 0},
            },
            "actions": [{"kind": "add_tag", "tag": tag}],
        }

    now = dt.datetime.now(dt.UTC)
    first_hour = (now + dt.timedelta(hours=2)).hour
    second_hour = (now + dt.timedelta(hours=5)).hour
    rule_id = await save_rule(None, "ticket", "Daily", daily(first_hour, "v1"), None)
    rules.append(rule_id)
    await set_enabled(rule_id, True, None)
    before = await pending_timer(rule_id)
    assert (before["version"], before["due_at"].hour) == (2, first_hour)

    await save_rule(rule_id, "ticket", "Daily", daily(second_hour, "v2"), None)

    after = await pending_timer(rule_id)
    assert (after["version"], after["due_at"].hour) == (3, second_hour)
    assert after["id"] != before["id"]
