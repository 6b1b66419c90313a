"""Workflow rules through the JSON API, with bearer keys against a real web
process: administrators' keys with the workflow_rule scope only, the same
validation as the admin pages, If-Match on the rule's version, the
confirmation of many timers due at once, deletion and the audit row."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.audit.tables import AuditLog
from app.tickets.service import create_ticket
from app.workflows import planning
from app.workflows.jobs import close_queue
from app.workflows.service import get_rule, save_rule
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowRuleVersion
from tests.browserless import Session
from tests.factories import contains, make_user
from tests.integration.test_api import bearer, new_key

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]

PROBLEM_JSON = "application/problem+json"
RULES = "/api/v1/workflow-rules"


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client
    # Enabling a time-based rule queues its planning from this process.
    await close_queue()


@pytest_asyncio.fixture(loop_scope="session")
async def admin_token() -> str:
    admin = await make_user("admin")
    return await new_key(admin.id, {"workflow_rule": "write"})


def tag_rule(marker: str, tag: str = "api", field: str = "subject") -> dict[str, Any]:
    return {
        "trigger": {"kind": "created"},
        "conditions": contains(field, marker),
        "actions": [{"kind": "add_tag", "tag": tag}],
    }


def follow_up_rule(marker: str) -> dict[str, Any]:
    """A rule with a timer due at once for each ticket whose subject has
    ``marker``."""
    return {
        "trigger": {"kind": "time_after", "after": "created_at", "delay_minutes": 0},
        "conditions": contains("subject", marker),
        "actions": [{"kind": "add_tag", "tag": "followed-up"}],
    }


def tags_of(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """Return each action's kind and tag; stored actions carry every field."""
    return [(action["kind"], action.get("tag")) for action in definition["actions"]]


async def create(
    api: httpx.AsyncClient, token: str, rules: list[int], **body: Any
) -> httpx.Response:
    response = await api.post(RULES, json=body, headers=bearer(token))
    if response.status_code == 201:
        rules.append(response.json()["id"])
    return response


async def create_tag_rule(
    api: httpx.AsyncClient, token: str, rules: list[int], name: str, **body: Any
) -> httpx.Response:
    """Create a ticket rule named ``name`` that tags tickets whose subject
    contains the name's last word."""
    marker = name.split()[-1]
    return await create(
        api,
        token,
        rules,
        object_type="ticket",
        name=name,
        definition=tag_rule(marker),
        **body,
    )


async def audit_rows(rule_id: int) -> list[dict[str, Any]]:
    return (
        await AuditLog.select(AuditLog.action, AuditLog.actor_id, AuditLog.changes)
        .where(
            (AuditLog.record_type == "workflow_rule") & (AuditLog.record_id == rule_id)
        )
        .order_by(AuditLog.id)
    )


async def test_create_and_read_rule(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    definition = tag_rule(marker)

    response = await create(
        api,
        admin_token,
        rules,
        object_type="ticket",
        name=f"Tag {marker}",
        definition=definition,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    read = await api.get(response.headers["location"], headers=bearer(admin_token))

    assert response.headers["location"] == f"{RULES}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["name"] == f"Tag {marker}"
    assert body["object_type"] == "ticket"
    assert body["enabled"] is False
    assert body["version"] == 1
    assert tags_of(body["definition"]) == [("add_tag", "api")]
    assert body["definition"]["trigger"]["kind"] == "created"
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["etag"] == '"1"'
    assert "ratelimit-remaining" in read.headers
    stored = await get_rule(body["id"])
    assert stored["name"] == f"Tag {marker}"
    assert [row["action"] for row in await audit_rows(body["id"])] == ["create"]


async def test_create_invalid_definition_stores_nothing(
    api, admin_token: str, rules
) -> None:
    name = f"Broken {uuid.uuid4().hex[:10]}"
    definition = {
        "trigger": {"kind": "created"},
        "actions": [{"kind": "set_field", "field": "no_such_field", "value": "x"}],
    }

    response = await create(
        api, admin_token, rules, object_type="ticket", name=name, definition=definition
    )

    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["field"] == "definition.actions.0.field"
    assert problem["value"] == "no_such_field"
    assert "Action 1 field" in problem["detail"]
    assert await WorkflowRule.count().where(WorkflowRule.name == name) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "definition": {}}, "object_type"),
        ({"object_type": "ticket", "definition": {}}, "name"),
        ({"object_type": "invoice", "name": "x", "definition": {}}, "object_type"),
        ({"object_type": "ticket", "name": "x", "definition": []}, "definition"),
        ({"object_type": "ticket", "name": 5, "definition": {}}, "name"),
        (
            {"object_type": "ticket", "name": "x", "definition": {}, "colour": 1},
            "colour",
        ),
    ],
)
async def test_create_rejects_body_naming_field(
    api, admin_token: str, rules, body: dict[str, Any], field: str
) -> None:
    response = await create(api, admin_token, rules, **body)

    assert response.status_code == 422
    assert response.json()["field"] == field


async def test_list_filters_and_pages_in_rule_order(
    api, admin_token: str, rules
) -> None:
    marker = uuid.uuid4().hex[:10]
    created = []
    for n in range(3):
        response = await create(
            api,
            admin_token,
            rules,
            object_type="deal",
            name=f"Deal rule {marker} {n}",
            definition=tag_rule(marker, field="name"),
        )
        created.append(response.json()["id"])
    # The last rule goes first in the order, so the list is not just by id.
    await WorkflowRule.update({WorkflowRule.position: -1_000_000}).where(
        WorkflowRule.id == created[2]
    )

    seen: list[dict[str, Any]] = []
    url: str | None = f"{RULES}?object_type=deal&limit=2"
    pages = 0
    while url is not None:
        response = await api.get(url, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= 2
        seen.extend(body["data"])
        url = body["next"]
        pages += 1

    ids = [row["id"] for row in seen]
    assert pages >= 2
    assert len(ids) == len(set(ids))
    assert {row["object_type"] for row in seen} == {"deal"}
    ours = [rule_id for rule_id in ids if rule_id in created]
    assert ours == [created[2], created[0], created[1]]
    positions = [(row["position"], row["id"]) for row in seen]
    assert positions == sorted(positions)
    assert "definition" not in seen[0]


async def test_list_rejects_unknown_object_type(api, admin_token: str) -> None:
    response = await api.get(
        f"{RULES}?object_type=invoice", headers=bearer(admin_token)
    )

    assert response.status_code == 400
    assert response.json()["field"] == "object_type"
    assert response.json()["value"] == "invoice"


async def test_update_needs_current_version(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create(
        api,
        admin_token,
        rules,
        object_type="ticket",
        name=f"Rename {marker}",
        definition=tag_rule(marker),
    )
    item = created.headers["location"]
    rename = {"name": f"Renamed {marker}"}

    missing = await api.patch(item, json=rename, headers=bearer(admin_token))
    stale = await api.patch(
        item, json=rename, headers=bearer(admin_token, **{"if-match": '"7"'})
    )
    after_stale = await get_rule(created.json()["id"])
    renamed = await api.patch(
        item, json=rename, headers=bearer(admin_token, **{"if-match": '"1"'})
    )
    enabled = await api.patch(
        item,
        json={"enabled": True},
        headers=bearer(admin_token, **{"if-match": renamed.headers["etag"]}),
    )
    star = await api.patch(
        item,
        json={"definition": tag_rule(marker, "other")},
        headers=bearer(admin_token, **{"if-match": "*"}),
    )

    assert missing.status_code == 428
    assert stale.status_code == 412
    assert stale.json()["field"] == "If-Match"
    assert stale.json()["current_version"] == 1
    assert after_stale["name"] == f"Rename {marker}"
    assert after_stale["current_version"] == 1
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == f"Renamed {marker}"
    assert renamed.headers["etag"] == '"2"'
    assert renamed.json()["definition"]["actions"][0]["tag"] == "api"
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True
    assert enabled.headers["etag"] == '"3"'
    assert star.status_code == 200
    assert star.headers["etag"] == '"4"'
    assert star.json()["definition"]["actions"][0]["tag"] == "other"
    assert star.json()["name"] == f"Renamed {marker}"


async def test_enable_needs_current_version(
    server, api, admin_token: str, rules
) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create_tag_rule(api, admin_token, rules, f"Switch {marker}")
    rule_id = created.json()["id"]
    item = created.headers["location"]
    read_first = await api.get(item, headers=bearer(admin_token))

    async def switch(enabled: bool, if_match: str | None) -> httpx.Response:
        headers = {} if if_match is None else {"if-match": if_match}
        return await api.patch(
            item, json={"enabled": enabled}, headers=bearer(admin_token, **headers)
        )

    enabled = await switch(True, read_first.headers["etag"])
    # A client that read the rule before the enabling disables it.
    stale = await switch(False, read_first.headers["etag"])
    after_stale = await get_rule(rule_id)
    weak = await switch(False, 'W/"2"')
    malformed = await switch(False, "two")
    missing = await switch(False, None)
    disabled = await switch(False, enabled.headers["etag"])
    # An administrator enables it on the rule's page.
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)
    page_switch = await session.post(
        f"/admin/workflows/{rule_id}/enabled", {"enabled": "on"}, htmx=False
    )
    await session.close()
    after_page = await switch(False, disabled.headers["etag"])
    star = await switch(False, "*")
    versions = await WorkflowRuleVersion.select(
        WorkflowRuleVersion.version, WorkflowRuleVersion.definition
    ).where(WorkflowRuleVersion.rule == rule_id)

    assert read_first.headers["etag"] == '"1"'
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True
    assert enabled.headers["etag"] == '"2"'
    assert enabled.json()["version"] == 2
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith(PROBLEM_JSON)
    assert stale.json()["field"] == "If-Match"
    assert stale.json()["value"] == 1
    assert stale.json()["current_version"] == 2
    assert after_stale["enabled"] is True
    assert after_stale["current_version"] == 2
    assert weak.status_code == 412
    assert weak.headers["content-type"].startswith(PROBLEM_JSON)
    assert malformed.status_code == 422
    assert malformed.json()["field"] == "If-Match"
    assert missing.status_code == 428
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert disabled.headers["etag"] == '"3"'
    assert page_switch.status_code in (302, 303)
    assert after_page.status_code == 412
    assert after_page.json()["current_version"] == 4
    assert star.status_code == 200, star.text
    assert star.json()["enabled"] is False
    assert star.headers["etag"] == '"5"'
    assert [
        row["version"] for row in sorted(versions, key=lambda row: row["version"])
    ] == [1, 2, 3, 4, 5]
    # A switch keeps the definition: every version has the first one's.
    assert len({row["definition"] for row in versions}) == 1


async def test_switch_to_same_state_keeps_version(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create_tag_rule(api, admin_token, rules, f"Already off {marker}")

    unchanged = await api.patch(
        created.headers["location"],
        json={"enabled": False},
        headers=bearer(admin_token, **{"if-match": '"1"'}),
    )

    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.headers["etag"] == '"1"'
    assert unchanged.json()["enabled"] is False


async def test_combined_switch_saves_one_version(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create_tag_rule(
        api,
        admin_token,
        rules,
        f"Born on {marker}",
        enabled=True,
    )
    changed = await api.patch(
        created.headers["location"],
        json={"name": f"Renamed off {marker}", "enabled": False},
        headers=bearer(admin_token, **{"if-match": '"1"'}),
    )

    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    assert created.json()["enabled"] is True
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["enabled"] is False
    assert changed.json()["name"] == f"Renamed off {marker}"


async def test_update_invalid_definition_stores_nothing(
    api, admin_token: str, rules
) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create(
        api,
        admin_token,
        rules,
        object_type="ticket",
        name=f"Keep {marker}",
        definition=tag_rule(marker),
    )
    rule_id = created.json()["id"]
    broken = tag_rule(marker)
    broken["actions"] = [
        {"kind": "notify", "user_id": 2_000_000_000, "body": "Look at this"}
    ]

    response = await api.patch(
        created.headers["location"],
        json={"name": f"Changed {marker}", "definition": broken, "enabled": True},
        headers=bearer(admin_token, **{"if-match": '"1"'}),
    )

    assert response.status_code == 422
    assert response.json()["field"] == "definition.actions.0.user_id"
    assert response.json()["value"] == 2_000_000_000
    stored = await get_rule(rule_id)
    assert stored["name"] == f"Keep {marker}"
    assert stored["current_version"] == 1
    assert stored["enabled"] is False
    assert (
        await WorkflowRuleVersion.count().where(WorkflowRuleVersion.rule == rule_id)
        == 1
    )


async def test_many_due_timers_need_confirm_flag(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    count = planning.CONFIRM_DUE_AT_ONCE
    for n in range(count):
        await create_ticket({"subject": f"Old {marker} {n}"}, None)
    body = {
        "object_type": "ticket",
        "name": f"Follow up {marker}",
        "definition": follow_up_rule(marker),
        "enabled": True,
    }

    unconfirmed = await create(api, admin_token, rules, **body)
    stored_unconfirmed = await WorkflowRule.count().where(
        WorkflowRule.name == body["name"]
    )
    disabled = await create(api, admin_token, rules, **{**body, "enabled": False})
    item = disabled.headers["location"]
    unconfirmed_enable = await api.patch(
        item, json={"enabled": True}, headers=bearer(admin_token, **{"if-match": "1"})
    )
    enabled_before_confirming = (await get_rule(disabled.json()["id"]))["enabled"]
    confirmed_enable = await api.patch(
        f"{item}?confirm_timers=true",
        json={"enabled": True},
        headers=bearer(admin_token, **{"if-match": "1"}),
    )
    confirmed_create = await api.post(
        f"{RULES}?confirm_timers=true", json=body, headers=bearer(admin_token)
    )
    if confirmed_create.status_code == 201:
        rules.append(confirmed_create.json()["id"])

    assert unconfirmed.status_code == 409
    assert unconfirmed.json()["field"] == "confirm_timers"
    assert unconfirmed.json()["timers"] == {"matching": count, "due_now": count}
    assert stored_unconfirmed == 0
    assert disabled.status_code == 201
    assert unconfirmed_enable.status_code == 409
    assert unconfirmed_enable.json()["timers"]["due_now"] == count
    assert enabled_before_confirming is False
    assert confirmed_enable.status_code == 200
    assert confirmed_enable.json()["enabled"] is True
    assert confirmed_create.status_code == 201
    assert confirmed_create.json()["enabled"] is True


async def test_delete_rule_audits_last_definition(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    definition = tag_rule(marker)
    created = await create(
        api,
        admin_token,
        rules,
        object_type="ticket",
        name=f"Doomed {marker}",
        definition=definition,
    )
    rule_id = created.json()["id"]
    item = created.headers["location"]

    stale = await api.delete(item, headers=bearer(admin_token, **{"if-match": '"5"'}))
    kept = await WorkflowRule.count().where(WorkflowRule.id == rule_id)
    deleted = await api.delete(item, headers=bearer(admin_token, **{"if-match": "1"}))
    again = await api.delete(item, headers=bearer(admin_token))
    read = await api.get(item, headers=bearer(admin_token))

    assert stale.status_code == 412
    assert kept == 1
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert read.status_code == 404
    assert await WorkflowRule.count().where(WorkflowRule.id == rule_id) == 0
    rows = await audit_rows(rule_id)
    assert [row["action"] for row in rows] == ["create", "delete"]
    removal = rows[-1]
    key_owner = rows[0]["actor_id"]
    assert removal["actor_id"] == key_owner is not None
    changes = json.loads(removal["changes"])
    assert changes["name"] == [f"Doomed {marker}", None]
    assert changes["version"] == [1, None]
    assert tags_of(changes["definition"][0]) == tags_of(definition)
    assert changes["definition"][1] is None


async def test_runs_listed_newest_first(api, admin_token: str, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    created = await create(
        api,
        admin_token,
        rules,
        object_type="ticket",
        name=f"Runs {marker}",
        definition=tag_rule(marker),
        enabled=True,
    )
    rule_id = created.json()["id"]
    for n in range(3):
        await create_ticket({"subject": f"Ticket {marker} {n}"}, None)
    stored = await RuleRun.select(RuleRun.id).where(RuleRun.rule == rule_id)

    seen = []
    url: str | None = f"{RULES}/{rule_id}/runs?limit=2"
    while url is not None:
        response = await api.get(url, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
        seen.extend(response.json()["data"])
        url = response.json()["next"]
    failures = await api.get(
        f"{RULES}/{rule_id}/runs?failures=true", headers=bearer(admin_token)
    )
    unknown = await api.get(f"{RULES}/2000000000/runs", headers=bearer(admin_token))

    assert len(stored) == 3
    ids = [run["id"] for run in seen]
    assert ids == sorted((row["id"] for row in stored), reverse=True)
    assert {run["outcome"] for run in seen} == {"done"}
    assert [action["kind"] for action in seen[0]["actions"]] == ["add_tag"]
    assert failures.status_code == 200
    assert failures.json()["data"] == []
    assert unknown.status_code == 404


async def test_rule_routes_need_admin_and_scope(api, rules) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await save_rule(
        None, "ticket", f"Guarded {marker}", tag_rule(marker), None
    )
    rules.append(rule_id)
    admin = await make_user("admin")
    manager = await make_user("sales_manager")
    keys = {
        "non-admin": await new_key(manager.id, {"workflow_rule": "write"}),
        "no scope": await new_key(admin.id, {"deal": "write"}),
        "read scope": await new_key(admin.id, {"workflow_rule": "read"}),
    }
    item = f"{RULES}/{rule_id}"
    body = {"object_type": "ticket", "name": f"Sneaky {marker}", "definition": {}}
    requests = [
        ("GET", RULES, {}),
        ("GET", item, {}),
        ("GET", f"{item}/runs", {}),
        ("POST", RULES, {"json": body}),
        ("PATCH", item, {"json": {"name": "x"}, "headers": {"if-match": "1"}}),
        ("DELETE", item, {}),
    ]

    anonymous = [
        (await api.request(method, url, **options)).status_code
        for method, url, options in requests
    ]
    refused = {}
    for label, token in keys.items():
        for method, url, options in requests:
            headers = bearer(token, **options.get("headers", {}))
            extra = {
                name: value for name, value in options.items() if name != "headers"
            }
            response = await api.request(method, url, headers=headers, **extra)
            refused[(label, method, url)] = response.status_code

    assert anonymous == [401] * len(requests)
    for (label, method, url), status in refused.items():
        reads_allowed = label == "read scope" and method == "GET"
        assert status == (200 if reads_allowed else 403), (label, method, url)
    stored = await get_rule(rule_id)
    assert stored["name"] == f"Guarded {marker}"
    assert await WorkflowRule.count().where(WorkflowRule.name == body["name"]) == 0
