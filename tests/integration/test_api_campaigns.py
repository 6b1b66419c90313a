"""Campaigns through the API, against a real web process.

Scheduled campaigns get a send time years ahead, and each test cancels
what it scheduled, so that the campaign workers of other tests sharing the
database never start sending them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.api.records import Sort, encode_cursor
from app.audit.tables import AuditLog
from app.campaigns.tables import Campaign
from tests.factories import make_team, make_user, unique
from tests.integration.test_api import bearer, new_key

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAR_AHEAD = "2030-01-15T09:00:00Z"
WRITE = {"campaign": "write"}


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def manager_key() -> str:
    manager = await make_user("sales_manager", team=await make_team())
    return await new_key(manager.id, WRITE)


def campaign_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": unique("Campaign"),
        "subject": "Hello {{ recipient.first_name }}",
        "body": "Our winter offer.",
        **changes,
    }


async def create(api: httpx.AsyncClient, token: str, **changes: Any) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/campaigns", json=campaign_body(**changes), headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_campaign_create_get_list(api) -> None:
    token = await manager_key()
    body = campaign_body(rate_per_minute=120)

    created = await api.post("/api/v1/campaigns", json=body, headers=bearer(token))
    campaign = created.json()
    fetched = await api.get(
        f"/api/v1/campaigns/{campaign['id']}", headers=bearer(token)
    )
    second = await create(api, token)
    # The page starts at the first campaign of this test.
    start = encode_cursor(Sort("id"), {"id": campaign["id"] - 1})
    after = {"cursor": start} if campaign["id"] > 1 else {}
    first_page = await api.get(
        "/api/v1/campaigns", params={"limit": 1, **after}, headers=bearer(token)
    )
    next_page = await api.get(first_page.json()["next"], headers=bearer(token))

    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"/api/v1/campaigns/{campaign['id']}"
    assert campaign["state"] == "draft"
    assert campaign["name"] == body["name"]
    assert campaign["rate_per_minute"] == 120
    assert campaign["influence_days"] == 30
    assert campaign["segment"] == {"type": "group", "match": "all", "items": []}
    assert fetched.status_code == 200
    assert fetched.headers["etag"] == '"1"'
    assert fetched.json()["stats"] == {
        "total": 0,
        "sent": 0,
        "bounced": 0,
        "replied": 0,
        "unsubscribed": 0,
    }
    assert [row["id"] for row in first_page.json()["data"]] == [campaign["id"]]
    assert "body" not in first_page.json()["data"][0]
    assert next_page.json()["data"][0]["id"] == second["id"]


async def test_campaign_patch_needs_if_match(api) -> None:
    token = await manager_key()
    campaign = await create(api, token, influence_days=10)
    url = f"/api/v1/campaigns/{campaign['id']}"

    missing = await api.patch(url, json={"name": "Renamed"}, headers=bearer(token))
    changed = await api.patch(
        url, json={"name": "Renamed"}, headers=bearer(token, **{"if-match": '"1"'})
    )
    stale = await api.patch(
        url, json={"name": "Stale"}, headers=bearer(token, **{"if-match": '"1"'})
    )
    stored = await Campaign.select(Campaign.name, Campaign.version).where(
        Campaign.id == campaign["id"]
    )

    assert missing.status_code == 428
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["name"] == "Renamed"
    assert changed.json()["subject"] == campaign["subject"]
    assert changed.json()["influence_days"] == 10
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert stored == [{"name": "Renamed", "version": 2}]


async def test_campaign_schedule_then_cancel(api) -> None:
    token = await manager_key()
    campaign = await create(api, token)
    url = f"/api/v1/campaigns/{campaign['id']}"

    scheduled = await api.post(
        f"{url}/schedule", json={"send_at": FAR_AHEAD}, headers=bearer(token)
    )
    edited = await api.patch(
        url, json={"body": "Changed."}, headers=bearer(token, **{"if-match": "2"})
    )
    cancelled = await api.post(f"{url}/cancel", headers=bearer(token))
    late_edit = await api.patch(
        url, json={"body": "Late."}, headers=bearer(token, **{"if-match": "4"})
    )
    late_schedule = await api.post(f"{url}/schedule", headers=bearer(token))
    cancelled_again = await api.post(f"{url}/cancel", headers=bearer(token))
    deleted = await api.delete(url, headers=bearer(token))

    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["state"] == "scheduled"
    assert scheduled.json()["send_at"].startswith("2030-01-15T09:00:00")
    assert scheduled.headers["etag"] == '"2"'
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "Changed."
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.headers["etag"] == '"4"'
    assert late_edit.status_code == 409
    assert late_edit.json()["field"] == "state"
    assert late_edit.json()["value"] == "cancelled"
    assert late_schedule.status_code == 409
    assert cancelled_again.status_code == 409
    assert deleted.status_code == 409


async def test_campaign_delete_draft(api) -> None:
    token = await manager_key()
    campaign = await create(api, token)
    url = f"/api/v1/campaigns/{campaign['id']}"

    deleted = await api.delete(url, headers=bearer(token))
    after_delete = await api.get(url, headers=bearer(token))
    again = await api.delete(url, headers=bearer(token))
    audit = await AuditLog.select(AuditLog.action, AuditLog.changes).where(
        (AuditLog.record_type == "campaign") & (AuditLog.record_id == campaign["id"])
    )

    assert deleted.status_code == 204
    assert after_delete.status_code == 404
    assert again.status_code == 404
    assert sorted(row["action"] for row in audit) == ["create", "delete"]


async def test_scheduled_campaign_not_deleted(api) -> None:
    token = await manager_key()
    campaign = await create(api, token)
    url = f"/api/v1/campaigns/{campaign['id']}"
    await api.post(
        f"{url}/schedule", json={"send_at": FAR_AHEAD}, headers=bearer(token)
    )

    deleted = await api.delete(url, headers=bearer(token))
    await api.post(f"{url}/cancel", headers=bearer(token))

    assert deleted.status_code == 409
    assert deleted.json()["value"] == "scheduled"


INVALID_BODIES = [
    ({"subject": "Hi", "body": "Text"}, "name"),
    (campaign_body(rate_per_minute="fast"), "rate_per_minute"),
    (campaign_body(influence_days=0), "influence_days"),
    (campaign_body(audience="partner"), "audience"),
    (campaign_body(name=42), "name"),
    (campaign_body(color="red"), "color"),
    (campaign_body(segment={"type": "group", "match": "some", "items": []}), None),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_campaign_invalid_input_names_field(
    api, body: dict[str, Any], field: str | None
) -> None:
    token = await manager_key()

    response = await api.post("/api/v1/campaigns", json=body, headers=bearer(token))

    assert response.status_code == 422, response.text
    if field is None:
        assert response.json()["field"].startswith("segment")
    else:
        assert response.json()["field"] == field


async def test_campaign_invalid_send_at_and_version(api) -> None:
    token = await manager_key()
    campaign = await create(api, token)
    url = f"/api/v1/campaigns/{campaign['id']}"

    send_at = await api.post(
        f"{url}/schedule", json={"send_at": "next week"}, headers=bearer(token)
    )
    past = await api.post(
        f"{url}/schedule",
        json={"send_at": "1999-01-01T00:00:00Z"},
        headers=bearer(token),
    )
    if_match = await api.patch(
        url, json={"name": "X"}, headers=bearer(token, **{"if-match": "one"})
    )

    assert send_at.status_code == 422
    assert send_at.json()["field"] == "send_at"
    assert send_at.json()["value"] == "next week"
    assert past.status_code == 422
    assert past.json()["field"] == "send_at"
    assert "is in the past" in past.json()["detail"]
    assert if_match.status_code == 422
    assert if_match.json()["field"] == "If-Match"


async def test_rep_reads_but_cannot_write(api) -> None:
    campaign = await create(api, await manager_key())
    url = f"/api/v1/campaigns/{campaign['id']}"
    rep = await make_user("sales_rep", team=await make_team())
    token = await new_key(rep.id, WRITE)
    version = {"if-match": "1"}

    read = await api.get(url, headers=bearer(token))
    listed = await api.get("/api/v1/campaigns", headers=bearer(token))
    writes = {
        "create": await api.post(
            "/api/v1/campaigns", json=campaign_body(), headers=bearer(token)
        ),
        "update": await api.patch(
            url, json={"name": "Rep"}, headers=bearer(token, **version)
        ),
        "delete": await api.delete(url, headers=bearer(token)),
        "schedule": await api.post(
            f"{url}/schedule", json={"send_at": FAR_AHEAD}, headers=bearer(token)
        ),
        "cancel": await api.post(f"{url}/cancel", headers=bearer(token)),
    }
    stored = await Campaign.select(Campaign.state, Campaign.version).where(
        Campaign.id == campaign["id"]
    )

    assert read.status_code == 200
    assert listed.status_code == 200
    for action, response in writes.items():
        assert response.status_code == 403, action
    assert stored == [{"state": "draft", "version": 1}]


async def test_support_agent_cannot_read(api) -> None:
    campaign = await create(api, await manager_key())
    agent = await make_user("support_agent", team=await make_team())
    token = await new_key(agent.id, WRITE)

    listed = await api.get("/api/v1/campaigns", headers=bearer(token))
    fetched = await api.get(
        f"/api/v1/campaigns/{campaign['id']}", headers=bearer(token)
    )

    assert listed.status_code == 403
    assert fetched.status_code == 403


async def test_key_without_campaign_scope(api) -> None:
    manager = await make_user("sales_manager", team=await make_team())
    read_only = await new_key(manager.id, {"campaign": "read"})
    other_type = await new_key(manager.id, {"deal": "write"})

    create_with_read = await api.post(
        "/api/v1/campaigns", json=campaign_body(), headers=bearer(read_only)
    )
    list_with_read = await api.get("/api/v1/campaigns", headers=bearer(read_only))
    list_with_deal = await api.get("/api/v1/campaigns", headers=bearer(other_type))

    assert create_with_read.status_code == 403
    assert list_with_read.status_code == 200
    assert list_with_deal.status_code == 403


async def test_campaign_stats_count_recipients(api) -> None:
    token = await manager_key()
    campaign = await create(api, token)
    outcomes = [
        "sent_at",
        "sent_at, bounced_at",
        "sent_at, replied_at",
        "sent_at, replied_at, unsubscribed_at",
        None,
    ]
    for index, columns in enumerate(outcomes):
        stamps = f", {columns}" if columns else ""
        values = ", now()" * len(columns.split(", ")) if columns else ""
        await Campaign.raw(
            "INSERT INTO campaign_recipient (campaign, email, message_id, state"
            f"{stamps}) VALUES ({{}}, {{}}, {{}}, {{}}{values})",
            campaign["id"],
            f"person{index}@example.com",
            f"<{unique('m')}@example.com>",
            "sent" if columns else "pending",
        )

    response = await api.get(
        f"/api/v1/campaigns/{campaign['id']}", headers=bearer(token)
    )

    assert response.json()["stats"] == {
        "total": 5,
        "sent": 4,
        "bounced": 1,
        "replied": 2,
        "unsubscribed": 1,
    }


async def test_single_brace_placeholder_rejected(api) -> None:
    token = await manager_key()
    body = campaign_body(subject="Hello {first_name}")

    response = await api.post("/api/v1/campaigns", json=body, headers=bearer(token))
    stored = await Campaign.select(Campaign.id).where(Campaign.name == body["name"])

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "subject"
    assert problem["value"] == "{first_name}"
    assert "{{ recipient.first_name }}" in problem["detail"]
    assert "{{ '{' }}" in problem["detail"]
    assert stored == []


async def test_patch_unknown_placeholder_keeps_text(api) -> None:
    token = await manager_key()
    campaign = await create(api, token, body="Dear {{ recipient.name }}")
    url = f"/api/v1/campaigns/{campaign['id']}"

    unknown = await api.patch(
        url,
        json={"body": "Dear {{ recipient.nickname }}"},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    stray = await api.patch(
        url,
        json={"body": "Dear {recipient.name}"},
        headers=bearer(token, **{"if-match": '"1"'}),
    )
    literal = await api.patch(
        url,
        json={"body": "Dear {{ recipient.name }}, see {{ '{' }}braces{{ '}' }}"},
        headers=bearer(token, **{"if-match": '"1"'}),
    )

    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["field"] == "body"
    assert unknown.json()["value"] == "{{ recipient.nickname }}"
    assert "{{ recipient.first_name }}" in unknown.json()["detail"]
    assert stray.status_code == 422, stray.text
    assert stray.json()["field"] == "body"
    assert stray.json()["value"] == "{recipient.name}"
    assert "write {{ recipient.name }}" in stray.json()["detail"]
    # The rejected changes stored nothing, so the version is still 1.
    assert literal.status_code == 200, literal.text
    assert literal.headers["etag"] == '"2"'
