"""The workflow admin pages over HTTP, deleting a rule from them, and the
user stream's access check."""

from __future__ import annotations

import json
import uuid

import pytest
import websockets

from app.audit.tables import AuditLog
from app.tasks.tables import Task
from app.tickets.service import create_ticket
from app.workflows.tables import RuleRun, WorkflowRule
from tests.browserless import Session
from tests.factories import contains, enabled_rule, make_user

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


async def test_admin_builds_rule_and_dry_runs_it(server) -> None:
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)
    marker = uuid.uuid4().hex[:10]
    rule_id = None
    try:
        response = await session.post(
            "/admin/workflows",
            {
                "object_type": "ticket",
                "name": f"Urgent {marker}",
                "trigger.kind": "created",
                "match": "all",
                "condition.0.field": "subject",
                "condition.0.op": "contains",
                "condition.0.value": marker,
                "condition.1.field": "priority",
                "condition.1.op": "equals",
                "condition.1.value": "urgent",
                "action.0.kind": "add_tag",
                "action.0.tag": "urgent",
            },
        )
        assert response.status_code in (200, 302, 303)
        rule = (
            await WorkflowRule.select()
            .where(WorkflowRule.name == f"Urgent {marker}")
            .first()
        )
        assert rule is not None
        rule_id = rule["id"]
        assert rule["enabled"] is False

        listing = await session.get("/admin/workflows?object_type=ticket")
        assert f"Urgent {marker}" in listing.text

        await session.post(f"/admin/workflows/{rule_id}/enabled", {"enabled": "on"})
        ticket_id = await create_ticket(
            {"subject": f"Fire {marker}", "priority": "low"}, None
        )
        dry = await session.post(
            f"/admin/workflows/{rule_id}/dry-run", {"record_id": str(ticket_id)}
        )
        assert dry.status_code == 200
        assert "The conditions do not hold" in dry.text
        assert dry.text.count('data-result="true"') == 1

        page = await session.get(f"/admin/workflows/{rule_id}")
        assert page.status_code == 200
        assert "skipped" in page.text
        assert await RuleRun.count().where(RuleRun.rule == rule_id) == 1

        bad = await session.post(
            "/admin/workflows",
            {"object_type": "ticket", "name": "No actions", "trigger.kind": "created"},
        )
        assert bad.status_code == 422
        assert 'data-field="actions"' in bad.text
    finally:
        if rule_id is not None:
            await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        await session.close()


async def test_non_admin_cannot_open_workflows(server) -> None:
    agent = await make_user("support_agent")
    session = Session(server.url)
    await session.sign_in(agent.email)

    response = await session.get("/admin/workflows")

    assert response.status_code == 403
    await session.close()


async def test_user_stream_only_for_own_user(server) -> None:
    user = await make_user("support_agent")
    other = await make_user("support_agent")
    session = Session(server.url)
    await session.sign_in(user.email)

    own = await session.live(f"topic=user:{user.id}")
    await own.close()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        socket = await session.live(f"topic=user:{other.id}")
        await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    await session.close()


async def test_enable_redirects_only_to_local_page(server) -> None:
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)
    name = f"Redirect {uuid.uuid4().hex[:10]}"
    try:
        saved = await session.post(
            "/admin/workflows",
            {
                "object_type": "ticket",
                "name": name,
                "trigger.kind": "created",
                "match": "all",
                "action.0.kind": "add_tag",
                "action.0.tag": "redirect",
            },
        )
        assert saved.status_code in (302, 303)
        rule_page = saved.headers["location"]

        for target in ("https://attacker.example/x", "//attacker.example/x"):
            response = await session.post(
                f"{rule_page}/enabled", {"enabled": "", "next": target}
            )
            assert response.status_code in (302, 303)
            assert response.headers["location"] == rule_page

        local = "/admin/workflows?object_type=ticket"
        response = await session.post(
            f"{rule_page}/enabled", {"enabled": "", "next": local}
        )
        assert response.headers["location"] == local
    finally:
        await WorkflowRule.delete().where(WorkflowRule.name == name)
        await session.close()


async def test_admin_deletes_rule_after_confirming(server, rules) -> None:
    admin = await make_user("admin")
    marker = uuid.uuid4().hex[:10]
    definition = {
        "trigger": {"kind": "created"},
        "conditions": contains("subject", marker),
        "actions": [{"kind": "create_task", "body": "Call back", "due_in_minutes": 60}],
    }
    rule_id = await enabled_rule(rules, definition)
    await create_ticket({"subject": f"Ticket {marker}"}, None)
    task_ids = [
        row["id"] for row in await Task.select(Task.id).where(Task.rule == rule_id)
    ]
    session = Session(server.url)
    await session.sign_in(admin.email)
    try:
        rule_page = await session.get(f"/admin/workflows/{rule_id}")
        confirmation = await session.get(f"/admin/workflows/{rule_id}/delete")
        unconfirmed = await session.post(
            f"/admin/workflows/{rule_id}/delete", {"version": "2"}, htmx=False
        )
        # Version 1 is the rule as saved before it was enabled.
        stale = await session.post(
            f"/admin/workflows/{rule_id}/delete",
            {"confirm": "yes", "version": "1"},
            htmx=False,
        )
        kept = await WorkflowRule.count().where(WorkflowRule.id == rule_id)
        deleted = await session.post(
            f"/admin/workflows/{rule_id}/delete",
            {"confirm": "yes", "version": "2"},
            htmx=False,
        )
        listing = await session.get(deleted.headers.get("location", "/"))
        gone = await session.get(f"/admin/workflows/{rule_id}")
    finally:
        await session.close()

    assert f'href="/admin/workflows/{rule_id}/delete"' in rule_page.text
    assert confirmation.status_code == 200
    assert '<strong class="runs">1</strong>' in confirmation.text
    assert '<strong class="tasks">1</strong>' in confirmation.text
    assert 'name="confirm" value="yes"' in confirmation.text
    assert unconfirmed.status_code == 422
    assert 'data-field="confirm"' in unconfirmed.text
    assert stale.status_code == 409
    assert 'data-field="version"' in stale.text
    assert kept == 1
    assert deleted.status_code == 302
    assert deleted.headers["location"] == (
        f"/admin/workflows?object_type=ticket&deleted={rule_id}"
    )
    assert f"Rule {rule_id} was deleted." in listing.text
    assert gone.status_code == 404
    assert await WorkflowRule.count().where(WorkflowRule.id == rule_id) == 0
    assert await RuleRun.count().where(RuleRun.rule == rule_id) == 0
    # The task stays, without its rule.
    assert len(task_ids) == 1
    task = await Task.select(Task.rule).where(Task.id == task_ids[0]).first()
    assert task == {"rule": None}
    audit = (
        await AuditLog.select(AuditLog.actor_id, AuditLog.changes)
        .where(
            (AuditLog.record_type == "workflow_rule")
            & (AuditLog.record_id == rule_id)
            & (AuditLog.action == "delete")
        )
        .first()
    )
    assert audit is not None
    assert audit["actor_id"] == admin.id
    changes = json.loads(audit["changes"])
    assert changes["enabled"] == [True, None]
    removed = changes["definition"][0]
    assert [action["kind"] for action in removed["actions"]] == ["create_task"]
    assert removed["conditions"]["items"][0]["value"] == marker


async def test_non_admin_cannot_delete_rule(server, rules) -> None:
    agent = await make_user("support_agent")
    rule_id = await enabled_rule(
        rules,
        {"trigger": {"kind": "created"}, "actions": [{"kind": "add_tag", "tag": "x"}]},
    )
    await WorkflowRule.update({WorkflowRule.enabled: False}).where(
        WorkflowRule.id == rule_id
    )
    session = Session(server.url)
    await session.sign_in(agent.email)
    try:
        page = await session.get(f"/admin/workflows/{rule_id}/delete")
        posted = await session.post(
            f"/admin/workflows/{rule_id}/delete",
            {"confirm": "yes", "version": "1"},
            htmx=False,
        )
    finally:
        await session.close()

    assert page.status_code == 403
    assert posted.status_code == 403
    assert "Only administrators" in posted.text
    assert await WorkflowRule.count().where(WorkflowRule.id == rule_id) == 1
