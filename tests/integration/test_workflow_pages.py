"""The workflow admin pages over HTTP, and the user stream's access check."""

from __future__ import annotations

import uuid

import pytest
import websockets

from app.tickets.service import create_ticket
from app.workflows.tables import RuleRun, WorkflowRule
from tests.browserless import Session
from tests.factories import make_user
from tests.servers import web_server

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server():
    with web_server() as running:
        yield running


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
