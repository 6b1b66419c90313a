"""Triggers, actor conditions and actions of rules, through the engine.

Each case enables a rule limited to the test's own records (by a marker in
the subject or name), makes a change through the record's service, and
reads the rule's runs and the record back from PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from app.deals.service import update_deal
from app.events.tables import Event
from app.merge import Edit
from app.tickets.service import create_ticket, set_ticket_field
from app.tickets.tables import Ticket
from app.workflows import clock
from app.workflows.tables import RuleRun, WorkflowTimer
from app.workflows.timers import fire_due_timers
from tests.factories import (
    contains,
    enabled_rule,
    make_deal,
    make_pipeline,
    make_team,
    make_user,
    runs_of,
    token,
)

pytestmark = pytest.mark.timeout(60)

# The field a case changes, its value before and after, and whether the
# rule fires.
TICKET_TRIGGER_CASES: list[tuple[str, dict[str, Any], str, str, str, bool]] = [
    ("entered pending", {"kind": "stage_entered", "stage": "pending"},
     "status", "open", "pending", True),
    ("entered another", {"kind": "stage_entered", "stage": "pending"},
     "status", "open", "solved", False),
    ("entered any", {"kind": "stage_entered"}, "status", "new", "on_hold", True),
    ("left open", {"kind": "stage_left", "stage": "open"},
     "status", "open", "pending", True),
    ("left another", {"kind": "stage_left", "stage": "open"},
     "status", "new", "pending", False),
    ("status to solved", {"kind": "status_changed", "status": "solved"},
     "status", "open", "solved", True),
    ("status to another", {"kind": "status_changed", "status": "solved"},
     "status", "open", "pending", False),
    ("status any", {"kind": "status_changed"}, "status", "open", "on_hold", True),
    ("status on priority", {"kind": "status_changed"},
     "priority", "low", "high", False),
    ("from and to",
     {"kind": "field_changed", "field": "priority", "from_value": "low",
      "to_value": "urgent"},
     "priority", "low", "urgent", True),
    ("from differs",
     {"kind": "field_changed", "field": "priority", "from_value": "low",
      "to_value": "urgent"},
     "priority", "medium", "urgent", False),
    ("to differs",
     {"kind": "field_changed", "field": "priority", "from_value": "low",
      "to_value": "urgent"},
     "priority", "low", "high", False),
    ("to only", {"kind": "field_changed", "field": "priority", "to_value": "urgent"},
     "priority", "medium", "urgent", True),
    ("from only", {"kind": "field_changed", "field": "priority", "from_value": "low"},
     "priority", "low", "high", True),
    ("another field", {"kind": "field_changed", "field": "priority"},
     "status", "open", "pending", False),
]  # fmt: skip


async def ticket(ticket_id: int) -> dict[str, Any]:
    rows = await Ticket.raw("SELECT * FROM ticket WHERE id = {}", ticket_id)
    assert len(rows) == 1
    return dict(rows[0])


async def ticket_with(marker: str, field: str, value: str) -> int:
    """Create a ticket whose ``field`` is ``value``, before any rule exists."""
    ticket_id = await create_ticket({"subject": f"Case {marker}"}, None)
    current = str((await ticket(ticket_id))[field])
    if current != value:
        await set_ticket_field(ticket_id, field, value, current, None)
    return ticket_id


@pytest.mark.parametrize(
    ("trigger", "field", "before", "after", "fires"),
    [case[1:] for case in TICKET_TRIGGER_CASES],
    ids=[case[0] for case in TICKET_TRIGGER_CASES],
)
async def test_ticket_trigger_matches_change(
    rules: list[int],
    trigger: dict[str, Any],
    field: str,
    before: str,
    after: str,
    fires: bool,
) -> None:
    marker = token()
    ticket_id = await ticket_with(marker, field, before)
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": trigger,
            "conditions": contains("subject", marker),
            "actions": [{"kind": "add_tag", "tag": "hit"}],
        },
    )

    await set_ticket_field(ticket_id, field, after, before, None)

    runs = await runs_of(rule_id)
    if fires:
        assert [run["outcome"] for run in runs] == ["done"]
        assert runs[0]["trigger"] == trigger["kind"]
        assert (await ticket(ticket_id))["tags"] == ["hit"]
    else:
        assert runs == []
        assert (await ticket(ticket_id))["tags"] == []


@pytest.mark.parametrize(
    ("kind", "stage_index", "moves", "fires"),
    [
        ("stage_entered", 1, (0, 1), True),
        ("stage_entered", 1, (0, 2), False),
        ("stage_left", 0, (0, 1), True),
        ("stage_left", 0, (1, 2), False),
    ],
    ids=["entered", "entered another", "left", "left another"],
)
async def test_deal_stage_trigger_matches_move(
    rules: list[int], kind: str, stage_index: int, moves: tuple[int, int], fires: bool
) -> None:
    marker = token()
    pipeline = await make_pipeline()
    stages = pipeline["stages"]
    deal_id = await make_deal(pipeline, moves[0], name=f"Deal {marker}")
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": kind, "stage": str(stages[stage_index])},
            "conditions": contains("name", marker),
            "actions": [{"kind": "add_tag", "tag": "moved"}],
        },
        "deal",
    )

    await update_deal(
        deal_id,
        {"stage": Edit(base=stages[moves[0]], new=stages[moves[1]])},
        None,
        reject_conflicts=True,
    )

    runs = await runs_of(rule_id)
    tags = await RuleRun.raw("SELECT tags FROM deal WHERE id = {}", deal_id)
    if fires:
        assert [run["trigger"] for run in runs] == [kind]
        assert tags[0]["tags"] == ["moved"]
    else:
        assert runs == []
        assert tags[0]["tags"] == []


ACTOR_CASES = [
    ("role of agent", "actor.role", "equals", "support_agent", "agent", True),
    ("role of admin", "actor.role", "equals", "support_agent", "admin", False),
    ("role of system", "actor.role", "equals", "support_agent", None, False),
    ("team of member", "actor.team", "equals", "TEAM", "agent", True),
    ("team of outsider", "actor.team", "equals", "TEAM", "admin", False),
    ("not in team", "actor.team", "not_equals", "TEAM", "admin", True),
    ("role in list", "actor.role", "in", "admin,manager", "admin", True),
]


@pytest.mark.parametrize(
    ("field", "op", "value", "actor", "fires"),
    [case[1:] for case in ACTOR_CASES],
    ids=[case[0] for case in ACTOR_CASES],
)
async def test_actor_condition_through_engine(
    rules: list[int],
    field: str,
    op: str,
    value: str,
    actor: str | None,
    fires: bool,
) -> None:
    marker = token()
    team_id = await make_team()
    users = {
        "agent": (await make_user("support_agent", team=team_id)).id,
        "admin": (await make_user("admin")).id,
        None: None,
    }
    ticket_id = await create_ticket({"subject": f"Actor {marker}"}, None)
    expected = str(team_id) if value == "TEAM" else value
    # Only the priority change triggers it, not the tag change it makes.
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "field_changed", "field": "priority"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    },
                    {"type": "condition", "field": field, "op": op, "value": expected},
                ],
            },
            "actions": [{"kind": "add_tag", "tag": "by-actor"}],
        },
    )

    await set_ticket_field(ticket_id, "priority", "high", "medium", users[actor])

    runs = await runs_of(rule_id)
    assert [run["outcome"] for run in runs] == ["done" if fires else "skipped"]
    tags = (await ticket(ticket_id))["tags"]
    assert tags == (["by-actor"] if fires else [])


async def test_clear_field_empties_the_field(rules: list[int]) -> None:
    marker = token()
    await enabled_rule(
        rules,
        {
            "trigger": {"kind": "field_changed", "field": "priority"},
            "conditions": contains("subject", marker),
            "actions": [{"kind": "clear_field", "field": "type"}],
        },
    )
    ticket_id = await create_ticket(
        {"subject": f"Clear {marker}", "type": "question"}, None
    )
    assert (await ticket(ticket_id))["type"] == "question"

    await set_ticket_field(ticket_id, "priority", "low", "medium", None)

    row = await ticket(ticket_id)
    assert row["type"] in (None, "")
    assert row["priority"] == "low"
    events = await ticket_events(ticket_id, "ticket.updated")
    # The cleared field joins the event of the change that triggered it.
    assert len(events) == 1
    assert events[0]["priority"] == ["medium", "low"]
    assert events[0]["type"][0] == "question"
    assert events[0]["type"][1] in (None, "")


async def test_remove_tag_keeps_other_tags(rules: list[int]) -> None:
    marker = token()
    ticket_id = await create_ticket({"subject": f"Tags {marker}"}, None)
    await RuleRun.raw(
        "UPDATE ticket SET tags = {} WHERE id = {}", ["vip", "keep"], ticket_id
    )
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "status_changed", "status": "solved"},
            "conditions": contains("subject", marker),
            "actions": [{"kind": "remove_tag", "tag": "vip"}],
        },
    )

    await set_ticket_field(ticket_id, "status", "solved", "new", None)

    assert (await ticket(ticket_id))["tags"] == ["keep"]
    [run] = await runs_of(rule_id)
    assert json.loads(run["actions"]) == [
        {"kind": "remove_tag", "result": "tags = keep"}
    ]
    events = await ticket_events(ticket_id, "ticket.updated")
    assert events[-1]["tags"] == [["vip", "keep"], ["keep"]]


async def test_move_sets_status_and_triggers_rules(rules: list[int]) -> None:
    marker = token()
    move_rule = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "created"},
            "conditions": contains("subject", marker),
            "actions": [{"kind": "move", "value": "open"}],
        },
    )
    # The move is a status change, so rules on it run in the next round.
    entered_rule = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "stage_entered", "stage": "open"},
            "conditions": contains("subject", marker),
            "actions": [{"kind": "add_tag", "tag": "opened"}],
        },
    )
    started = dt.datetime.now(dt.UTC)

    ticket_id = await create_ticket({"subject": f"Move {marker}"}, None)

    row = await ticket(ticket_id)
    assert row["status"] == "open"
    assert row["status_changed_at"] >= started
    assert row["tags"] == ["opened"]
    [moved] = await runs_of(move_rule)
    assert moved["outcome"] == "done"
    assert json.loads(moved["actions"]) == [{"kind": "move", "result": "status = open"}]
    [entered] = await runs_of(entered_rule)
    assert entered["outcome"] == "done"
    assert entered["depth"] == 1


@pytest.mark.parametrize(
    ("from_value", "to_value", "fires"),
    [
        ("1000", "5000", True),
        ("1,000.00", "5,000", True),
        ("", "5000.0", True),
        ("", "4999.99", False),
        ("900", "", False),
    ],
)
async def test_amount_change_matches_by_number(
    rules: list[int], from_value: str, to_value: str, fires: bool
) -> None:
    marker = token()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, 0, amount="1000", name=f"Deal {marker}")
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "field_changed",
                "field": "amount",
                "from_value": from_value,
                "to_value": to_value,
            },
            "conditions": contains("name", marker),
            "actions": [{"kind": "add_tag", "tag": "big"}],
        },
        "deal",
    )

    await update_deal(
        deal_id,
        {"amount": Edit(base=Decimal("1000.00"), new=Decimal("5000.00"))},
        None,
        reject_conflicts=True,
    )

    runs = await runs_of(rule_id)
    assert [run["outcome"] for run in runs] == (["done"] if fires else [])


async def test_move_deal_to_stage(rules: list[int]) -> None:
    marker = token()
    pipeline = await make_pipeline()
    stages = pipeline["stages"]
    deal_id = await make_deal(pipeline, 0, name=f"Deal {marker}")
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "field_changed", "field": "amount"},
            "conditions": contains("name", marker),
            "actions": [{"kind": "move", "value": str(stages[1])}],
        },
        "deal",
    )

    await update_deal(
        deal_id,
        {"amount": Edit(base=Decimal("1000"), new=Decimal("5000"))},
        None,
        reject_conflicts=True,
    )

    rows = await RuleRun.raw(
        "SELECT stage, stage_entered_at FROM deal WHERE id = {}", deal_id
    )
    assert rows[0]["stage"] == stages[1]
    assert rows[0]["stage_entered_at"] is not None
    assert [run["outcome"] for run in await runs_of(rule_id)] == ["done"]


async def ticket_events(ticket_id: int, kind: str) -> list[dict[str, Any]]:
    rows = (
        await Event.select(Event.changes)
        .where(
            (Event.record_type == "ticket")
            & (Event.record_id == ticket_id)
            & (Event.kind == kind)
        )
        .order_by(Event.id)
    )
    return [json.loads(row["changes"]) for row in rows]


async def test_daily_schedule_runs_once_a_day(rules: list[int]) -> None:
    marker = token()
    ticket_id = await create_ticket({"subject": f"Daily {marker}"}, None)
    # A scheduled run reads the least recently updated records first.
    await RuleRun.raw(
        "UPDATE ticket SET updated_at = '2000-01-01T00:00:00Z' WHERE id = {}",
        ticket_id,
    )
    hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).hour
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "scheduled",
                "schedule": {"every": "daily", "hour": hour, "minute": 15},
            },
            "conditions": contains("subject", marker),
            "actions": [{"kind": "add_tag", "tag": "daily"}],
        },
    )
    [timer] = await WorkflowTimer.select().where(WorkflowTimer.rule == rule_id)
    due = timer["due_at"]
    assert (due.hour, due.minute, due.second) == (hour, 15, 0)
    assert dt.timedelta(hours=2) < due - dt.datetime.now(dt.UTC)
    assert due - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=3, minutes=15)

    clock.shift(due - clock.now() - dt.timedelta(seconds=30))
    await fire_due_timers()
    assert (await ticket(ticket_id))["tags"] == []

    clock.shift(dt.timedelta(seconds=60))
    await fire_due_timers()
    await fire_due_timers()
    assert (await ticket(ticket_id))["tags"] == ["daily"]
    timers = (
        await WorkflowTimer.select()
        .where(WorkflowTimer.rule == rule_id)
        .order_by(WorkflowTimer.id)
    )
    assert [timer["fired_at"] is not None for timer in timers] == [True, False]
    assert timers[1]["due_at"] == due + dt.timedelta(days=1)

    # The next day's run fires the rule again.
    clock.shift(dt.timedelta(days=1))
    await fire_due_timers()
    runs = await RuleRun.select().where(
        (RuleRun.rule == rule_id) & (RuleRun.record_id == ticket_id)
    )
    assert [run["trigger"] for run in runs] == ["scheduled", "scheduled"]
