"""Leads through the JSON API, against a real web process and worker queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.audit.tables import AuditLog
from app.leads.service import create_lead
from app.leads.tables import Lead
from tests.factories import make_team, make_user, unique
from tests.integration.test_api import bearer, new_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def test_lead_create_update_delete(api) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    manager = await make_user("sales_manager", team=team)
    token = await new_key(rep.id, {"lead": "write"})
    manager_token = await new_key(manager.id, {"lead": "write"})
    company = unique("Acme")

    created = await api.post(
        "/api/v1/leads",
        json={"name": "Jo Doe", "email": "jo@acme.test", "company": company},
        headers=bearer(token),
    )
    lead_id = created.json()["id"]
    renamed = await api.patch(
        f"/api/v1/leads/{lead_id}",
        json={"status": "working"},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    stale = await api.patch(
        f"/api/v1/leads/{lead_id}",
        json={"status": "qualified"},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    listed = await api.get(
        f"/api/v1/leads?status=working&owner={rep.id}", headers=bearer(token)
    )
    bad_status = await api.get("/api/v1/leads?status=hot", headers=bearer(token))
    bad_email = await api.post(
        "/api/v1/leads",
        json={"name": "X", "email": "not-an-email"},
        headers=bearer(token),
    )
    # Sales reps may not delete leads; their manager may.
    refused = await api.delete(f"/api/v1/leads/{lead_id}", headers=bearer(token))
    deleted = await api.delete(
        f"/api/v1/leads/{lead_id}", headers=bearer(manager_token)
    )

    assert created.status_code == 201
    assert created.json()["owner"] == rep.id
    assert created.json()["company"] == company
    assert renamed.status_code == 200
    assert renamed.json()["status"] == "working"
    assert stale.status_code == 412
    assert [row["id"] for row in listed.json()["data"]] == [lead_id]
    assert bad_status.status_code == 400
    assert bad_status.json()["field"] == "status"
    assert bad_email.status_code == 422
    assert bad_email.json()["field"] == "email"
    assert refused.status_code == 403
    assert deleted.status_code == 204
    assert not await Lead.exists().where(Lead.id == lead_id)
    audited = (
        await AuditLog.select(AuditLog.action)
        .where((AuditLog.record_type == "lead") & (AuditLog.record_id == lead_id))
        .order_by(AuditLog.id)
    )
    assert [row["action"] for row in audited] == ["create", "update", "delete"]


async def test_leads_follow_scopes(api) -> None:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    stranger = await make_user("sales_rep", team=other_team)
    agent = await make_user("support_agent", team=team)
    mine = await create_lead({"name": unique("Mine")}, rep.id)
    theirs = await create_lead({"name": unique("Theirs")}, stranger.id)

    rep_key = await new_key(rep.id, {"lead": "read"})
    listed = await api.get("/api/v1/leads?limit=200", headers=bearer(rep_key))
    other = await api.get(f"/api/v1/leads/{theirs}", headers=bearer(rep_key))
    agent_key = await new_key(agent.id, {"lead": "read"})
    refused = await api.get("/api/v1/leads", headers=bearer(agent_key))

    ids = [row["id"] for row in listed.json()["data"]]
    assert mine in ids
    assert theirs not in ids
    assert other.status_code == 404
    assert refused.status_code == 403
