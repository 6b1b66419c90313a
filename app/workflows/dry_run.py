"""Dry runs: a rule's conditions and actions against a stored record.

A dry run changes nothing. Conditions on a change (``changed``,
``changed_to``) and on the actor (``actor.team``, ``actor.role``) only
hold when the dry run is given a simulated change and an acting user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.auth.service import load_user
from app.errors import FieldError
from app.fields import reference
from app.workflows.conditions import Facts, Outcome, evaluate
from app.workflows.engine import LoadedRule, trigger_matches, updated_occurrence
from app.workflows.records import RECORD_TYPES, RecordType, load_record
from app.workflows.schema import ACTION_LABELS

# Triggers that a simulated field change can set off.
CHANGE_TRIGGERS = (
    "updated",
    "field_changed",
    "stage_entered",
    "stage_left",
    "status_changed",
)


@dataclass(frozen=True)
class SimulatedChange:
    """A change of one field to evaluate a rule against, as stored values."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Actor:
    """The user a dry run pretends made the change."""

    user_id: int
    name: str
    team_ids: tuple[int, ...]
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DryRun:
    """A rule's result against a record: each condition and each action.

    ``trigger_matched`` is whether the rule's trigger fires on the simulated
    change, and None without one or for a trigger that no field change sets off.
    """

    held: bool
    outcomes: list[Outcome]
    actions: list[str]
    record: dict[str, Any]
    change: SimulatedChange | None = None
    actor: Actor | None = None
    trigger_matched: bool | None = None


def parse_change(
    record_type: RecordType,
    field: str | None,
    before: str | None,
    after: str | None,
) -> SimulatedChange | None:
    """Build a simulated change from form text, or None when all is empty.

    Values of editable fields are parsed as a form's would be. Raises
    FieldError naming ``change_field``, ``change_from`` or ``change_to``.
    """
    name = (field or "").strip()
    before_text = (before or "").strip()
    after_text = (after or "").strip()
    if not name:
        if before_text or after_text:
            raise FieldError(
                "change_field", field, "must name the field whose change to simulate"
            )
        return None
    if name not in record_type.readable:
        raise FieldError(
            "change_field",
            name,
            f"is not a {record_type.name} field; "
            f"use one of {', '.join(record_type.readable)}",
        )
    return SimulatedChange(
        field=name,
        before=parse_value(record_type, name, before_text, "change_from"),
        after=parse_value(record_type, name, after_text, "change_to"),
    )


def parse_value(record_type: RecordType, name: str, text: str, path: str) -> Any:
    if name not in record_type.editable:
        return text or None
    try:
        return record_type.parse(name, text or None)
    except FieldError as error:
        raise FieldError(path, text, error.reason) from None


async def load_actor(raw: str | None) -> Actor | None:
    """Load the acting user named by id in form text; None when empty.

    Raises FieldError naming ``actor_id`` for an invalid or unknown id.
    """
    user_id = reference("actor_id", raw)
    if user_id is None:
        return None
    user = await load_user(user_id)
    if user is None:
        raise FieldError("actor_id", raw, "is not a user")
    return Actor(
        user_id=user.id, name=user.name, team_ids=user.team_ids, roles=user.roles
    )


async def dry_run(
    rule: LoadedRule,
    record_id: int,
    change: SimulatedChange | None = None,
    actor: Actor | None = None,
) -> DryRun:
    """Evaluate ``rule`` against a stored record and list the actions it would
    run, changing nothing.

    With ``change`` the conditions read the field's new value, as a rule
    run after that change would. Raises LookupError when the record does
    not exist.
    """
    record_type = RECORD_TYPES[rule.object_type]
    record = await load_record(record_type, record_id)
    if record is None:
        raise LookupError(f"{rule.object_type} {record_id} not found")

    seen = dict(record)
    changes: dict[str, Any] = {}
    trigger_matched = None
    if change is not None:
        seen[change.field] = change.after
        changes = {change.field: [change.before, change.after]}
        trigger = rule.definition.trigger
        if trigger.kind in CHANGE_TRIGGERS:
            occurrence = updated_occurrence(
                rule.object_type, record_id, changes, None, 0
            )
            trigger_matched = trigger_matches(trigger, occurrence)
    facts = Facts(
        seen,
        changes,
        actor.team_ids if actor else (),
        actor.roles if actor else (),
    )
    held, outcomes = evaluate(rule.definition.conditions, facts)

    actions = [
        describe_action(ACTION_LABELS[action.kind], action)
        for action in rule.definition.actions
    ]
    return DryRun(
        held=held,
        outcomes=outcomes,
        actions=actions,
        record=record,
        change=change,
        actor=actor,
        trigger_matched=trigger_matched,
    )


def describe_action(label: str, action: Any) -> str:
    parts = [label]
    for name in ("field", "value", "team_id", "user_id", "to", "endpoint_id", "tag"):
        value = getattr(action, name)
        if value not in (None, ""):
            parts.append(f"{name.replace('_', ' ')}: {value}")
    return ", ".join(parts)
