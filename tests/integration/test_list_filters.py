"""List pages and API list routes reject an invalid query parameter with 400,
naming the parameter and its value, instead of showing an unfiltered list.

Pages return the error page (or their inline error), and htmx requests get
a toast. The API returns problem details whose ``field`` and ``value``
members name the parameter and its value.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.api.keys import SCOPED_TYPES
from app.workflows.service import save_rule
from app.workflows.tables import WorkflowRule
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_ticket, make_user, token
from tests.integration.test_api import bearer, new_key

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROBLEM_JSON = "application/problem+json"
EVERY_SCOPE = {name: "write" for name in SCOPED_TYPES}


@dataclass
class World:
    """An administrator's page session and API key, and records whose ids
    the paths name."""

    session: Session
    api_key: str
    ids: dict[str, int]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(server) -> AsyncIterator[World]:
    admin = await make_user("admin")
    pipeline = await make_pipeline()
    rule_id = await save_rule(
        None,
        "ticket",
        f"Filter rule {token()}",
        {
            "trigger": {"kind": "created"},
            "actions": [{"kind": "add_tag", "tag": "never-enabled"}],
        },
        None,
    )
    ids = {
        "pipeline": pipeline["id"],
        "deal": await make_deal(pipeline),
        "ticket": await make_ticket(),
        "rule": rule_id,
    }
    session = Session(server.url)
    await session.sign_in(admin.email)
    yield World(session, await new_key(admin.id, EVERY_SCOPE), ids)
    await session.close()
    await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


def not_taken(place: str, parameters: str) -> str:
    return f"is not a parameter of this {place} (it takes {parameters})"


# A page, its query, the parameter's label and value as the message shows
# them, and a part of the reason.
PAGES = [
    (
        "/tickets",
        {"assignee": "abc"},
        "Assignee 'abc'",
        not_taken("page", "person, team"),
    ),
    ("/tickets", {"person": "abc"}, "Person 'abc'", "is not a valid id"),
    ("/tickets", {"team": "1.5"}, "Team '1.5'", "is not a valid id"),
    ("/tickets", {"person": ["1", "2"]}, "Person", "must be given at most once"),
    (
        "/tickets/board",
        {"priority": "urgent"},
        "Priority 'urgent'",
        not_taken("page", "person, team"),
    ),
    (
        "/tickets/columns/open",
        {"after": "yesterday"},
        "After 'yesterday'",
        "is not a valid page cursor",
    ),
    ("/tickets/columns/archived", {}, "Status 'archived'", "must be one of new, open"),
    (
        "/pipelines/{pipeline}",
        {"owner": "7"},
        "Owner '7'",
        not_taken("page", "person, team"),
    ),
    ("/pipelines/{pipeline}", {"person": "me"}, "Person 'me'", "is not a valid id"),
    (
        "/pipelines/{pipeline}/board",
        {"stage": "2"},
        "Stage '2'",
        not_taken("page", "person, team"),
    ),
    ("/pipelines/{pipeline}/board", {"team": "-3"}, "Team '-3'", "is not a valid id"),
    ("/accounts", {"sort": "name"}, "Sort 'name'", not_taken("page", "page, q, size")),
    ("/accounts", {"page": "0"}, "Page '0'", "must be a whole number of 1 or more"),
    ("/contacts", {"owner": "abc"}, "Owner 'abc'", not_taken("page", "page, q, size")),
    ("/contacts", {"size": "1000"}, "Size '1000'", "must be at most 200"),
    ("/leads", {"status": "won"}, "Status 'won'", "must be one of new, working"),
    (
        "/leads",
        {"order": "oldest"},
        "Order 'oldest'",
        "must be one of score, newest, name",
    ),
    ("/leads", {"owner": "x1"}, "Owner 'x1'", "is not a valid id"),
    ("/leads", {"stage": "new"}, "Stage 'new'", "is not a parameter of this page"),
    ("/leads/board/columns/won", {}, "Status 'won'", "must be one of new, working"),
    ("/tasks", {"show": "none"}, "Show 'none'", "must be one of all"),
    (
        "/tasks",
        {"status": "done"},
        "Status 'done'",
        not_taken("page", "page, show, size"),
    ),
    ("/admin/audit", {"since": "2026-13-45"}, "Since '2026-13-45'", "is not a date"),
    ("/admin/audit", {"until": "soon"}, "Until 'soon'", "is not a date"),
    (
        "/admin/audit",
        {"record_type": "planet"},
        "Record type 'planet'",
        "must be one of deal",
    ),
    ("/admin/audit", {"record_id": "abc"}, "Record id 'abc'", "must be a whole number"),
    ("/admin/audit", {"user": "1"}, "User '1'", "is not a parameter of this page"),
    (
        "/admin/users",
        {"role": "admin"},
        "Role 'admin'",
        not_taken("page", "page, q, size"),
    ),
    ("/admin/users", {"page": "last"}, "Page 'last'", "must be a whole number"),
    ("/campaigns", {"state": "sent"}, "State 'sent'", not_taken("page", "page")),
    (
        "/admin/workflows",
        {"object_type": "planet"},
        "Object type 'planet'",
        "is not a workflow object type",
    ),
    ("/admin/workflows", {"deleted": "x"}, "Deleted 'x'", "is not a valid id"),
    ("/forecast", {"group": "planet"}, "Group 'planet'", "must be one of owner, team"),
    ("/forecast", {"pipeline": "x"}, "Pipeline 'x'", "is not a valid id"),
    ("/admin/quotas", {"period": "2026-13"}, "Period '2026-13'", "must be a month"),
    ("/sla/report", {"start": "2026-02-30"}, "Start '2026-02-30'", "is not a date"),
    (
        "/sla/report",
        {"queue": "vip"},
        "Queue 'vip'",
        not_taken("page", "end, page, start"),
    ),
    (
        "/exports/tickets.csv",
        {"assignee": "1"},
        "Assignee '1'",
        not_taken("page", "person, team"),
    ),
    ("/exports/leads.csv", {"status": "won"}, "Status 'won'", "must be one of new"),
    ("/exports/deals.csv", {"person": "x"}, "Person 'x'", "is not a valid id"),
    ("/deals/{deal}/history", {"before": "x"}, "Before 'x'", "must be a whole number"),
    ("/deals/{deal}/history", {"page": "2"}, "Page '2'", not_taken("page", "before")),
    ("/admin/scoring", {"queued": "x"}, "Queued 'x'", "must be one of training"),
    ("/deals", {"owner": "7"}, "Owner '7'", "is not a parameter of this page"),
    ("/deals", {"sort": "weight"}, "Sort 'weight'", "must be one of"),
    ("/search", {"kind": "deal"}, "Kind 'deal'", "is not a parameter of this page"),
    ("/search", {"type": "planet", "q": "a"}, "Type 'planet'", "must be one of"),
    ("/search/suggest", {"limit": "9"}, "Limit '9'", "is not a parameter of this"),
]


@pytest.mark.parametrize(("path", "query", "named", "reason"), PAGES)
async def test_page_rejects_invalid_filter(
    world: World, path: str, query: dict[str, Any], named: str, reason: str
) -> None:
    response = await world.session.get(
        path.format(**world.ids), params=query, headers={"accept": "text/html"}
    )

    text = html.unescape(response.text)
    assert response.status_code == 400, text[-500:]
    assert f"{named} {reason}" in text


async def test_htmx_request_gets_toast(world: World) -> None:
    response = await world.session.get(
        "/tickets/board", params={"assignee": "abc"}, headers={"hx-request": "true"}
    )

    text = html.unescape(response.text)
    assert response.status_code == 400
    assert 'class="toast toast-error"' in text
    assert "Assignee 'abc' is not a parameter of this page" in text


async def test_valid_and_empty_filters_still_list(world: World) -> None:
    """Filter forms send their unset fields empty, which means no filter."""
    paths = [
        ("/tickets", {"person": "", "team": ""}),
        ("/tickets", {"person": "1", "team": "1"}),
        (f"/pipelines/{world.ids['pipeline']}", {"person": "", "team": ""}),
        ("/leads", {"q": "", "status": "", "source": "", "owner": "", "order": ""}),
        ("/tasks", {"show": "all"}),
        ("/admin/audit", {"actor": "", "since": "2026-01-01"}),
    ]
    for path, query in paths:
        response = await world.session.get(path, params=query)

        assert response.status_code == 200, (path, query)


# An API list route, its query, and the field and value the problem names.
API = [
    ("/tickets", {"assignee": "abc"}, "assignee", "abc"),
    ("/tickets", {"status": "archived"}, "status", "archived"),
    ("/tickets", {"priority": "urgent"}, "priority", "urgent"),
    ("/deals", {"stage": "first"}, "stage", "first"),
    (
        "/deals",
        {"updated_since": "2026-13-01T00:00Z"},
        "updated_since",
        "2026-13-01T00:00Z",
    ),
    ("/deals", {"sort": "amount"}, "sort", "amount"),
    ("/accounts", {"owner": "-1"}, "owner", "-1"),
    ("/contacts", {"sort": "-email"}, "sort", "-email"),
    ("/leads", {"status": "won"}, "status", "won"),
    ("/leads", {"limit": "0"}, "limit", "0"),
    ("/campaigns", {"state": "archived"}, "state", "archived"),
    ("/campaigns", {"audience": "partner"}, "audience", "partner"),
    ("/pipelines", {"cursor": "nowhere"}, "cursor", "nowhere"),
    ("/stages", {"kind": "maybe"}, "kind", "maybe"),
    ("/users", {"active": "yes"}, "active", "yes"),
    ("/teams", {"sort": "size"}, "sort", "size"),
    ("/workflow-rules", {"object_type": "planet"}, "object_type", "planet"),
    ("/workflow-rules/{rule}/runs", {"failures": "maybe"}, "failures", "maybe"),
    ("/deals/{deal}/comments", {"author": "me"}, "author", "me"),
    ("/tickets/{ticket}/tasks", {"done": "maybe"}, "done", "maybe"),
    ("/pipelines/{pipeline}/stages", {"kind": "closed"}, "kind", "closed"),
    ("/search", {"q": "a", "sort": "name"}, "sort", "name"),
    ("/search", {"q": "a", "type": "planet"}, "type", "planet"),
]


@pytest.mark.parametrize(("path", "query", "field", "value"), API)
async def test_api_list_rejects_invalid_filter(
    world: World, path: str, query: dict[str, str], field: str, value: str
) -> None:
    async with httpx.AsyncClient(base_url=world.session.base_url, timeout=10) as api:
        response = await api.get(
            "/api/v1" + path.format(**world.ids),
            params=query,
            headers=bearer(world.api_key),
        )

    problem = response.json()
    assert response.status_code == 400, problem
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert problem["field"] == field
    assert problem["value"] == value
    assert f"'{value}'" in problem["detail"]
