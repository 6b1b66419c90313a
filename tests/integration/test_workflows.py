"""The workflow engine against real PostgreSQL and Redis."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from app.comments.service import add_comment
from app.errors import FieldError
from app.events.tables import Event
from app.merge import Edit
from app.tickets.service import create_ticket, update_ticket
from app.tickets.tables import Ticket
from app.webhooks.service import EndpointInput, create_endpoint
from app.webhooks.tables import OutboxMessage, WebhookEndpoint
from app.workflows import clock, engine
from app.workflows.dry_run import dry_run
from app.workflows.service import load_rule, save_rule
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from app.workflows.timers import fire_due_timers
from tests.factories import enabled_rule, make_team, make_user, runs_of, token

pytestmark = pytest.mark.timeout(60)


def subject_is(marker: str) -> dict[str, Any]:
    return {
        "type": "group",
        "match": "all",
        "items": [
            {"type": "condition", "field": "subject", "op": "contains", "value": marker}
        ],
    }


async def ticket_events(ticket_id: int) -> list[dict[str, Any]]:
    rows = (
        await Event.select()
        .where((Event.record_type == "ticket") & (Event.record_id == ticket_id))
        .order_by(Event.id)
    )
    return [{**row, "changes": json.loads(row["changes"])} for row in rows]


async def test_field_action_joins_the_triggering_event(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "field_changed",
                "field": "priority",
                "to_value": "urgent",
            },
            "conditions": subject_is(marker),
            "actions": [
                {"kind": "set_field", "field": "status", "value": "open"},
                {"kind": "add_tag", "tag": "escalated"},
            ],
        },
    )
    ticket_id = await create_ticket({"subject": f"Broken {marker}"}, None)

    await update_ticket(ticket_id, {"priority": Edit("medium", "urgent")}, None)

    ticket = await Ticket.select().where(Ticket.id == ticket_id).first()
    assert ticket is not None
    assert ticket["status"] == "open"
    tags = await Ticket.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    assert tags[0]["tags"] == ["escalated"]
    events = await ticket_events(ticket_id)
    assert [event["kind"] for event in events] == ["ticket.created", "ticket.updated"]
    assert events[1]["changes"] == {
        "priority": ["medium", "urgent"],
        "status": ["new", "open"],
        "tags": [[], ["escalated"]],
    }
    runs = await runs_of(rule_id)
    assert [run["outcome"] for run in runs] == ["done"]
    # Saved, then enabled: the enabling is the second version.
    assert runs[0]["version"] == 2


async def test_failing_rule_rolls_back_but_change_commits(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "updated"},
            "conditions": subject_is(marker),
            "actions": [
                {"kind": "add_tag", "tag": "first"},
                {"kind": "set_field", "field": "assignee", "value": "2147483000"},
            ],
        },
    )
    ticket_id = await create_ticket({"subject": f"Failing {marker}"}, None)

    await update_ticket(ticket_id, {"priority": Edit("medium", "high")}, None)

    ticket = await Ticket.raw(
        "SELECT priority, tags FROM ticket WHERE id = {}", ticket_id
    )
    assert ticket[0]["priority"] == "high"
    assert ticket[0]["tags"] == []
    runs = await runs_of(rule_id)
    assert runs[-1]["outcome"] == "failed"
    assert "is not a user" in runs[-1]["error"]
    events = await ticket_events(ticket_id)
    assert events[-1]["changes"] == {"priority": ["medium", "high"]}


async def test_created_rule_sees_complete_record(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "created"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    },
                    {
                        "type": "condition",
                        "field": "priority",
                        "op": "equals",
                        "value": "urgent",
                    },
                    {
                        "type": "condition",
                        "field": "channel",
                        "op": "equals",
                        "value": "phone",
                    },
                ],
            },
            "actions": [{"kind": "add_note", "body": "Urgent call: {record.subject}"}],
        },
    )

    ticket_id = await create_ticket(
        {"subject": f"Call {marker}", "priority": "urgent", "channel": "phone"}, None
    )

    runs = await runs_of(rule_id)
    assert [run["outcome"] for run in runs] == ["done"]
    notes = await Event.raw(
        "SELECT body, internal FROM comment WHERE ticket = {}", ticket_id
    )
    assert len(notes) == 1
    assert notes[0]["internal"] is True
    assert marker in notes[0]["body"]


async def test_comment_received_trigger(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "comment_received"},
            "conditions": subject_is(marker),
            "actions": [{"kind": "set_field", "field": "status", "value": "open"}],
        },
    )
    user = await make_user()
    ticket_id = await create_ticket({"subject": f"Comment {marker}"}, None)

    await add_comment("ticket", ticket_id, "Any news?", user.id)

    ticket = await Ticket.select(Ticket.status).where(Ticket.id == ticket_id).first()
    assert ticket == {"status": "open"}
    # The rule's own change is not a received comment, so it ran once.
    assert [run["outcome"] for run in await runs_of(rule_id)] == ["done"]


async def test_loop_guard_stops_rules_triggering_each_other(
    rules: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    marker = token()
    up = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "field_changed",
                "field": "priority",
                "to_value": "high",
            },
            "conditions": subject_is(marker),
            "actions": [{"kind": "set_field", "field": "priority", "value": "urgent"}],
        },
    )
    down = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "field_changed",
                "field": "priority",
                "to_value": "urgent",
            },
            "conditions": subject_is(marker),
            "actions": [{"kind": "set_field", "field": "priority", "value": "high"}],
        },
    )
    ticket_id = await create_ticket({"subject": f"Loop {marker}"}, None)

    await update_ticket(ticket_id, {"priority": Edit("medium", "high")}, None)

    outcomes = [run["outcome"] for rule in (up, down) for run in await runs_of(rule)]
    assert outcomes.count("loop_limit") == 1
    assert outcomes.count("done") == engine.MAX_DEPTH + 1
    assert "outcome=loop_limit" in caplog.text
    events = await ticket_events(ticket_id)
    assert len(events) == 2


async def test_dry_run_changes_nothing(rules: list[int]) -> None:
    marker = token()
    rule_id = await save_rule(
        None,
        "ticket",
        "Dry",
        {
            "trigger": {"kind": "updated"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    },
                    # Saving checks values against table columns, but the
                    # count of attachments is derived, so this is only
                    # found false when the rule runs.
                    {
                        "type": "condition",
                        "field": "attachments",
                        "op": "greater",
                        "value": "lots",
                    },
                ],
            },
            "actions": [{"kind": "set_field", "field": "status", "value": "open"}],
        },
        None,
    )
    rules.append(rule_id)
    ticket_id = await create_ticket({"subject": f"Dry {marker}"}, None)
    before = await Ticket.select().where(Ticket.id == ticket_id).first()

    result = await dry_run(await load_rule(rule_id), ticket_id)

    assert result.held is False
    assert [outcome.result for outcome in result.outcomes] == [True, False]
    assert "is not a number" in result.outcomes[1].reason
    assert result.actions == ["Set a field, field: status, value: open"]
    assert await Ticket.select().where(Ticket.id == ticket_id).first() == before
    assert await runs_of(rule_id) == []


async def test_edit_makes_a_new_version(rules: list[int]) -> None:
    definition: dict[str, Any] = {
        "trigger": {"kind": "created"},
        "actions": [{"kind": "add_tag", "tag": "one"}],
    }
    rule_id = await save_rule(None, "ticket", "Versioned", definition, None)
    rules.append(rule_id)
    definition["actions"] = [{"kind": "add_tag", "tag": "two"}]

    await save_rule(rule_id, "ticket", "Versioned", definition, None)

    versions = await WorkflowRule.raw(
        "SELECT version, definition::text AS definition FROM workflow_rule_version "
        "WHERE rule = {} ORDER BY version",
        rule_id,
    )
    assert [row["version"] for row in versions] == [1, 2]
    assert '"one"' in versions[0]["definition"]
    assert (await load_rule(rule_id)).version == 2


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"trigger": {"kind": "sometimes"}, "actions": []}, "definition.trigger.kind"),
        ({"trigger": {"kind": "created"}, "actions": []}, "actions"),
        (
            {
                "trigger": {"kind": "created"},
                "actions": [{"kind": "set_field", "field": "nope"}],
            },
            "actions.0.field",
        ),
        (
            {
                "trigger": {"kind": "created"},
                "actions": [
                    {"kind": "set_field", "field": "priority", "value": "huge"}
                ],
            },
            "actions.0.value",
        ),
        (
            {
                "trigger": {"kind": "created"},
                "actions": [{"kind": "webhook", "url": "ftp://x"}],
            },
            "actions.0.url",
        ),
        (
            {
                "trigger": {"kind": "time_after", "delay_minutes": -1},
                "actions": [{"kind": "rescore"}],
            },
            "trigger.delay_minutes",
        ),
    ],
)
async def test_invalid_definition_names_field(
    definition: dict[str, Any], field: str
) -> None:
    before = await WorkflowRule.count()

    with pytest.raises(FieldError) as raised:
        await save_rule(None, "ticket", "Bad", definition, None)

    assert raised.value.field == field
    assert await WorkflowRule.count() == before


async def test_side_effects_commit_with_change(rules: list[int]) -> None:
    marker = token()
    issued = await create_endpoint(
        EndpointInput(url="http://127.0.0.1:9/hook", event_types=("deal.created",)),
        None,
        allow_private=True,
    )
    await enabled_rule(
        rules,
        {
            "trigger": {"kind": "created"},
            "conditions": subject_is(marker),
            "actions": [{"kind": "webhook", "endpoint_id": issued.id}],
        },
    )

    with pytest.raises(RuntimeError):
        from app.events.service import change_set

        async with change_set(None) as changes:
            rows = await Ticket.insert(
                Ticket(subject=f"Rolled back {marker}")
            ).returning(Ticket.id)
            changes.add("ticket.created", "ticket", rows[0]["id"], ["tickets"], {})
            await changes.write()
            raise RuntimeError("abort")
    rolled_back = await OutboxMessage.count().where(OutboxMessage.endpoint == issued.id)

    ticket_id = await create_ticket({"subject": f"Committed {marker}"}, None)
    messages = await OutboxMessage.select().where(OutboxMessage.endpoint == issued.id)
    await WebhookEndpoint.delete().where(WebhookEndpoint.id == issued.id)

    assert rolled_back == 0
    assert len(messages) == 1
    assert messages[0]["event_type"] == "workflow.webhook"
    assert f'"id":{ticket_id}' in messages[0]["payload"]


async def test_time_after_fires_once_when_due(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "time_after",
                "after": "updated_at",
                "delay_minutes": 30,
            },
            "conditions": subject_is(marker),
            "actions": [{"kind": "add_tag", "tag": "stale"}],
        },
    )
    ticket_id = await create_ticket({"subject": f"Stale {marker}"}, None)
    timer = await WorkflowTimer.select().where(WorkflowTimer.rule == rule_id).first()
    assert timer is not None

    assert await fire_due_timers() >= 0
    assert await runs_of(rule_id) == []
    clock.shift(dt.timedelta(minutes=31))
    await fire_due_timers()
    await fire_due_timers()

    runs = await runs_of(rule_id)
    assert [run["outcome"] for run in runs] == ["done"]
    assert runs[0]["trigger"] == "time_after"
    tags = await Ticket.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    assert tags[0]["tags"] == ["stale"]


async def test_fire_runs_sla_rules(rules: list[int]) -> None:
    marker = token()
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "sla.breached"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    },
                    {
                        "type": "condition",
                        "field": "details.metric",
                        "op": "equals",
                        "value": "first_response",
                    },
                ],
            },
            "actions": [{"kind": "set_field", "field": "priority", "value": "urgent"}],
        },
    )
    ticket_id = await create_ticket({"subject": f"SLA {marker}"}, None)

    await engine.fire("sla.breached", "ticket", ticket_id, {"metric": "first_response"})

    ticket = await Ticket.select(Ticket.priority).where(Ticket.id == ticket_id).first()
    assert ticket == {"priority": "urgent"}
    assert [run["trigger"] for run in await runs_of(rule_id)] == ["sla.breached"]
    with pytest.raises(ValueError, match="not fired from outside"):
        await engine.fire("created", "ticket", ticket_id, {})


async def test_assign_and_notify_on_urgent_ticket(rules: list[int]) -> None:
    marker = token()
    team = await make_team()
    agents = [await make_user("support_agent", team=team) for _ in range(2)]
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "created"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    },
                    {
                        "type": "condition",
                        "field": "priority",
                        "op": "equals",
                        "value": "urgent",
                    },
                ],
            },
            "actions": [
                {"kind": "assign", "team_id": team},
                {"kind": "notify", "team_id": team, "body": "Urgent: {record.subject}"},
            ],
        },
    )
    before = await OutboxMessage.raw(
        "SELECT coalesce(max(id), 0) AS id FROM outbox_message"
    )

    ticket_id = await create_ticket(
        {"subject": f"Down {marker}", "priority": "urgent"}, None
    )

    ticket = await Ticket.select(Ticket.assignee).where(Ticket.id == ticket_id).first()
    assert ticket is not None
    assert ticket["assignee"] in [agent.id for agent in agents]
    assert [run["outcome"] for run in await runs_of(rule_id)] == ["done"]
    events = {event["kind"]: event for event in await ticket_events(ticket_id)}
    # The assignment service records its own event, and the created event
    # carries the final assignee as well.
    assert events["ticket.created"]["changes"]["assignee"] == [None, ticket["assignee"]]
    notify = await OutboxMessage.select(OutboxMessage.payload).where(
        (OutboxMessage.id > before[0]["id"]) & (OutboxMessage.kind == "notify")
    )
    assert len(notify) == 1
    user_ids = json.loads(notify[0]["payload"])["user_ids"]
    assert sorted(user_ids) == sorted(agent.id for agent in agents)


async def test_rate_limit_stops_loop_across_changes(
    rules: list[int], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two rules that undo each other loop on every change of the ticket, both
    # acting in each round. The loop guard ends each change's rounds and the
    # rate limit ends the repetition over changes.
    per_change = 2 * (engine.MAX_DEPTH + 1)
    monkeypatch.setattr(engine, "RATE_LIMIT", per_change + 3)
    marker = token()
    for before, after in (("high", "urgent"), ("urgent", "high")):
        await enabled_rule(
            rules,
            {
                "trigger": {"kind": "field_changed", "field": "priority"},
                "conditions": {
                    "type": "group",
                    "match": "all",
                    "items": [
                        {
                            "type": "condition",
                            "field": "subject",
                            "op": "contains",
                            "value": marker,
                        },
                        {
                            "type": "condition",
                            "field": "priority",
                            "op": "equals",
                            "value": before,
                        },
                    ],
                },
                "actions": [{"kind": "set_field", "field": "priority", "value": after}],
            },
        )
    ticket_id = await create_ticket({"subject": f"Rate {marker}"}, None)

    await update_ticket(ticket_id, {"priority": Edit("medium", "high")}, None)
    first = await ticket_runs(ticket_id)
    await update_ticket(ticket_id, {"priority": Edit("high", "urgent")}, None)
    runs = await ticket_runs(ticket_id)

    assert first.count("done") == per_change
    assert "rate_limited" not in first
    assert runs.count("done") == engine.RATE_LIMIT
    limited_from = runs.index("rate_limited")
    assert "done" not in runs[limited_from:]
    assert "outcome=rate_limited" in caplog.text
    assert f"ticket_id={ticket_id} trigger=field_changed outcome=rate_limited" in (
        caplog.text
    )


async def ticket_runs(ticket_id: int) -> list[str]:
    rows = (
        await RuleRun.select(RuleRun.outcome)
        .where((RuleRun.record_type == "ticket") & (RuleRun.record_id == ticket_id))
        .order_by(RuleRun.id)
    )
    return [row["outcome"] for row in rows]


async def set_description(ticket_id: int, text: str) -> None:
    rows = await Ticket.select(Ticket.description).where(Ticket.id == ticket_id)
    edit = Edit(rows[0]["description"], text)
    result = await update_ticket(ticket_id, {"description": edit}, None)
    assert not result.conflicts


async def test_rate_limit_ignores_skipped_runs(
    rules: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "RATE_LIMIT", 3)
    marker = token()
    never = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "updated"},
            "conditions": subject_is(f"absent {marker}"),
            "actions": [{"kind": "add_tag", "tag": "never"}],
        },
    )
    ticket_id = await create_ticket({"subject": f"Skips {marker}"}, None)
    for step in range(4):
        await set_description(ticket_id, f"step {step}")
    tagging = await enabled_rule(
        rules,
        {
            "trigger": {"kind": "updated"},
            "conditions": subject_is(marker),
            "actions": [{"kind": "add_tag", "tag": "seen"}],
        },
    )

    await set_description(ticket_id, "last")

    # Five changes, and the tag that the second rule added.
    skipped = [run["outcome"] for run in await runs_of(never)]
    assert skipped == ["skipped"] * 6
    # The change, then the round its own tag started, which changes nothing.
    assert [run["outcome"] for run in await runs_of(tagging)] == ["done", "done"]
