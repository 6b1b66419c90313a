"""Dry runs of rules with conditions on a change and on the actor.

Without a simulated change, "changed", "changed to" and actor conditions
are false, because a dry run makes no change. With one, they are evaluated
as the engine would after that change by that user.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from app.errors import FieldError
from app.tickets.service import create_ticket
from app.tickets.tables import Ticket
from app.workflows.dry_run import dry_run, load_actor, parse_change
from app.workflows.records import RECORD_TYPES
from app.workflows.service import load_rule, save_rule
from app.workflows.tables import RuleRun, WorkflowRule
from tests.browserless import Session
from tests.factories import make_team, make_user
from tests.servers import WebServer, web_server

pytestmark = pytest.mark.timeout(60)

TICKET = RECORD_TYPES["ticket"]


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running:
        yield running


@pytest_asyncio.fixture
async def escalation() -> AsyncIterator[dict[str, Any]]:
    """A rule on "priority changed to urgent by a support agent of a team"."""
    team_id = await make_team()
    agent = await make_user("support_agent", team=team_id)
    admin = await make_user("admin")
    rule_id = await save_rule(
        None,
        "ticket",
        f"Escalate {uuid.uuid4().hex[:8]}",
        {
            "trigger": {
                "kind": "field_changed",
                "field": "priority",
                "to_value": "urgent",
            },
            "conditions": {
                "type": "group",
                "items": [
                    {"type": "condition", "field": "priority", "op": "changed"},
                    {
                        "type": "condition",
                        "field": "priority",
                        "op": "changed_to",
                        "value": "urgent",
                    },
                    {
                        "type": "condition",
                        "field": "actor.role",
                        "op": "equals",
                        "value": "support_agent",
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
    ticket_id = await create_ticket(
        {"subject": "Printer on fire", "priority": "medium"}, None
    )
    yield {"rule": rule_id, "ticket": ticket_id, "agent": agent, "admin": admin}
    await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


# The simulated change and acting user, then each condition's result,
# whether all hold and whether the trigger fires (None: not checked).
DRY_RUN_CASES = [
    ("no change", None, None, None, None,
     [False, False, False, False], False, None),
    ("change only", "priority", "medium", "urgent", None,
     [True, True, False, False], False, True),
    ("change by agent", "priority", "medium", "urgent", "agent",
     [True, True, True, True], True, True),
    ("change by admin", "priority", "medium", "urgent", "admin",
     [True, True, False, False], False, True),
    ("to another value", "priority", "medium", "high", "agent",
     [True, False, True, True], False, False),
    ("another field", "status", "new", "open", "agent",
     [False, False, True, True], False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "before", "after", "actor", "results", "held", "trigger_matched"),
    [case[1:] for case in DRY_RUN_CASES],
    ids=[case[0] for case in DRY_RUN_CASES],
)
async def test_dry_run_simulates_change_and_actor(
    escalation: dict[str, Any],
    field: str | None,
    before: str | None,
    after: str | None,
    actor: str | None,
    results: list[bool],
    held: bool,
    trigger_matched: bool | None,
) -> None:
    change = parse_change(TICKET, field, before, after)
    acting = await load_actor(str(escalation[actor].id) if actor else None)
    stored = await Ticket.select().where(Ticket.id == escalation["ticket"]).first()

    result = await dry_run(
        await load_rule(escalation["rule"]), escalation["ticket"], change, acting
    )

    assert [outcome.result for outcome in result.outcomes] == results
    assert result.held is held
    assert result.trigger_matched is trigger_matched
    assert result.actions == ["Add a tag, tag: escalated"]
    after_run = await Ticket.select().where(Ticket.id == escalation["ticket"]).first()
    assert after_run == stored
    assert await RuleRun.count().where(RuleRun.rule == escalation["rule"]) == 0


@pytest.mark.parametrize(
    ("field", "before", "after", "path"),
    [
        ("nope", "", "x", "change_field"),
        ("", "low", "", "change_field"),
        ("priority", "low", "huge", "change_to"),
        ("status", "later", "open", "change_from"),
    ],
)
def test_parse_change_names_invalid_field(
    field: str, before: str, after: str, path: str
) -> None:
    with pytest.raises(FieldError) as raised:
        parse_change(TICKET, field, before, after)

    assert raised.value.field == path


async def test_load_actor_rejects_unknown_user() -> None:
    with pytest.raises(FieldError) as raised:
        await load_actor("999999999")

    assert raised.value.field == "actor_id"
    assert await load_actor("") is None


async def test_dry_run_page_shows_change(
    server: WebServer, escalation: dict[str, Any]
) -> None:
    admin = escalation["admin"]
    session = Session(server.url)
    await session.sign_in(admin.email)
    try:
        url = f"/admin/workflows/{escalation['rule']}/dry-run"
        plain = await session.post(url, {"record_id": str(escalation["ticket"])})
        simulated = await session.post(
            url,
            {
                "record_id": str(escalation["ticket"]),
                "change_field": "priority",
                "change_from": "medium",
                "change_to": "urgent",
                "actor_id": str(escalation["agent"].id),
            },
        )
        invalid = await session.post(
            url,
            {
                "record_id": str(escalation["ticket"]),
                "change_field": "priority",
                "change_from": "medium",
                "change_to": "huge",
            },
        )
        page = await session.get(f"/admin/workflows/{escalation['rule']}")
    finally:
        await session.close()

    assert plain.status_code == 200
    assert "The conditions do not hold" in plain.text
    assert plain.text.count('data-result="false"') == 4
    assert "data-trigger" not in plain.text
    assert simulated.status_code == 200
    assert "The conditions hold" in simulated.text
    assert simulated.text.count('data-result="true"') == 4
    assert 'data-trigger="true"' in simulated.text
    assert "Simulated change: priority from medium to urgent" in simulated.text
    assert f"(user {escalation['agent'].id})" in simulated.text
    assert invalid.status_code == 422
    assert "Change to &#39;huge&#39; must be one of" in invalid.text
    assert 'name="change_field"' in page.text
    assert 'name="actor_id"' in page.text
