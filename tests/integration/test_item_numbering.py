"""Errors in a rule's conditions and a segment's rules count them from 1, on
the pages and in the API's problem details, while the API's ``field`` keeps
the 0-based path into the request body."""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.campaigns.tables import Campaign
from app.workflows.tables import WorkflowRule
from tests.browserless import Session
from tests.factories import make_team, make_user
from tests.integration.test_api import bearer, new_key

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def admin_session(server) -> AsyncIterator[Session]:
    admin = await make_user("admin", team=await make_team())
    session = Session(server.url)
    await session.sign_in(admin.email)
    yield session
    await session.close()


def rule_definition(second_op: Any) -> dict[str, Any]:
    return {
        "trigger": {"kind": "created"},
        "conditions": {
            "type": "group",
            "items": [
                {
                    "type": "condition",
                    "field": "subject",
                    "op": "contains",
                    "value": "a",
                },
                {
                    "type": "condition",
                    "field": "subject",
                    "op": second_op,
                    "value": "b",
                },
            ],
        },
        "actions": [{"kind": "add_tag", "tag": "numbered"}],
    }


def segment(second_op: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "match": "all",
        "items": [
            {"type": "condition", "field": "title", "op": "contains", "value": "a"},
            {"type": "condition", "field": "title", "op": second_op, "value": "b"},
        ],
    }


def campaign_form(name: str, fields: list[str], operators: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "audience": "contact",
        "match": "all",
        "condition_field": fields,
        "condition_op": operators,
        "condition_value": ["a"] * len(fields),
        "subject": "Hello {{ recipient.first_name }}",
        "body": "Hi",
        "rate_per_minute": "30",
        "influence_days": "14",
    }


async def test_rule_page_counts_conditions_from_one(admin_session: Session) -> None:
    name = f"Numbered {uuid.uuid4().hex[:10]}"
    form = {
        "object_type": "ticket",
        "name": name,
        "trigger.kind": "created",
        "match": "all",
        "condition.0.field": "subject",
        "condition.0.op": "contains",
        "condition.0.value": "a",
        "condition.1.field": "subject",
        "condition.1.op": "bogus",
        "condition.1.value": "b",
        "action.0.kind": "add_tag",
        "action.0.tag": "numbered",
    }
    try:
        response = await admin_session.post("/admin/workflows", form)

        page = html.unescape(response.text)
        assert response.status_code == 422
        assert "Condition 2 operator 'bogus' is invalid" in page
        assert "Conditions items" not in page
        assert 'data-field="definition.conditions.items.1.op"' in page
        assert await WorkflowRule.count().where(WorkflowRule.name == name) == 0
    finally:
        await WorkflowRule.delete().where(WorkflowRule.name == name)


async def test_rule_api_counts_conditions_from_one(api: httpx.AsyncClient) -> None:
    admin = await make_user("admin")
    token = await new_key(admin.id, {"workflow_rule": "write"})
    name = f"Numbered {uuid.uuid4().hex[:10]}"
    nested = rule_definition("equals")
    nested["conditions"]["items"].append(
        {
            "type": "group",
            "match": "any",
            "items": [{"type": "condition", "field": "subject", "op": 7}],
        }
    )

    invalid_op = await api.post(
        "/api/v1/workflow-rules",
        json={
            "object_type": "ticket",
            "name": name,
            "definition": rule_definition("bogus"),
        },
        headers=bearer(token),
    )
    invalid_nested = await api.post(
        "/api/v1/workflow-rules",
        json={"object_type": "ticket", "name": name, "definition": nested},
        headers=bearer(token),
    )

    problem = invalid_op.json()
    assert invalid_op.status_code == 422
    assert problem["detail"].startswith("Condition 2 operator 'bogus' is invalid")
    assert problem["field"] == "definition.conditions.items.1.op"
    assert problem["value"] == "bogus"
    nested_problem = invalid_nested.json()
    assert invalid_nested.status_code == 422
    assert nested_problem["detail"].startswith("Condition 3.1 operator 7 is invalid")
    assert nested_problem["field"] == "definition.conditions.items.2.items.0.op"
    assert await WorkflowRule.count().where(WorkflowRule.name == name) == 0


async def test_campaign_page_counts_segment_rules_from_one(
    admin_session: Session,
) -> None:
    name = f"Numbered {uuid.uuid4().hex[:10]}"

    bad_op = await admin_session.post(
        "/campaigns/",
        campaign_form(name, ["title", "title"], ["contains", "bogus"]),
        htmx=False,
    )
    bad_field = await admin_session.post(
        "/campaigns/",
        campaign_form(name, ["salary", "title"], ["equals", "equals"]),
        htmx=False,
    )

    op_page = html.unescape(bad_op.text)
    field_page = html.unescape(bad_field.text)
    assert bad_op.status_code == 422
    assert "Segment rule 2 operator 'bogus' is invalid" in op_page
    assert 'data-field="segment.items.1.op"' in op_page
    assert "Segment.items" not in op_page
    assert bad_field.status_code == 422
    assert "Segment rule 1 field 'salary' is not a field of contacts" in field_page
    assert 'data-field="segment.items.0.field"' in field_page
    assert await Campaign.count().where(Campaign.name == name) == 0


async def test_campaign_api_counts_segment_rules_from_one(
    api: httpx.AsyncClient,
) -> None:
    manager = await make_user("sales_manager", team=await make_team())
    token = await new_key(manager.id, {"campaign": "write"})
    name = f"Numbered {uuid.uuid4().hex[:10]}"
    body = {
        "name": name,
        "subject": "Hello {{ recipient.first_name }}",
        "body": "Hi",
        "segment": segment("changed"),
    }

    change_op = await api.post("/api/v1/campaigns", json=body, headers=bearer(token))
    unknown_op = await api.post(
        "/api/v1/campaigns",
        json={**body, "segment": segment("bogus")},
        headers=bearer(token),
    )

    problem = change_op.json()
    assert change_op.status_code == 422
    assert problem["detail"].startswith("Segment rule 2 operator 'changed' is about")
    assert problem["field"] == "segment.items.1.op"
    assert problem["value"] == "changed"
    unknown = unknown_op.json()
    assert unknown_op.status_code == 422
    assert unknown["detail"].startswith("Segment rule 2 operator 'bogus' is invalid")
    assert unknown["field"] == "segment.items.1.op"
    assert unknown["value"] == "bogus"
    assert await Campaign.count().where(Campaign.name == name) == 0
