"""Running rules: when a change set is about to commit, when code fires a
trigger, and when a timer is due.

``on_change_set`` runs inside ``change_set()`` after the service's writes
and before its events are written, so "created" rules see the complete
record, and the writes of field actions commit with the change. Each run
of a rule sits in a savepoint: a failing rule is rolled back and logged as
``failed`` while the change that triggered it still commits.

Rules that change fields trigger rules again, up to ``MAX_DEPTH`` rounds
in one transaction, and the actions of at most ``RATE_LIMIT`` runs a
minute run on one record. A run stopped by either is logged with that outcome.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.auth.service import load_user
from app.events.service import ChangeSet, change_set
from app.events.tables import Event as EventRow
from app.workflows import timers
from app.workflows.actions import (
    ActionContext,
    ActionFailed,
    SideEffect,
    run_action,
)
from app.workflows.conditions import Facts, Mismatch, evaluate, is_empty, same
from app.workflows.records import RECORD_TYPES, RecordType, load_record
from app.workflows.schema import (
    FIELD_ACTIONS,
    FIRED_TRIGGERS,
    RuleDefinition,
    Trigger,
    decode_definition,
)

logger = logging.getLogger(__name__)

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
LOOP_LIMIT, RATE_LIMITED = "loop_limit", "rate_limited"
OUTCOMES = (DONE, SKIPPED, FAILED, LOOP_LIMIT, RATE_LIMITED)
# Rounds of rules triggered by other rules' changes within one transaction.
MAX_DEPTH = 5
# Runs whose actions ran ("done") per record within RATE_WINDOW_SECONDS,
# counted over all rules. Skipped, failed and stopped runs do not count.
RATE_LIMIT = 60
RATE_WINDOW_SECONDS = 60
DEFINITION_CACHE_SIZE = 1024
# Set while a rule's actions run. A service that an action calls may open a
# nested change set, whose events this engine already follows as the next
# depth, so that change set's own hook leaves them alone.
_in_rule: ContextVar[bool] = ContextVar("workflow_in_rule", default=False)

RULES_SQL = """
SELECT r.id, r.name, r.object_type, r.current_version AS version,
       v.id AS version_id, v.definition::text AS definition
FROM workflow_rule r
JOIN workflow_rule_version v ON v.rule = r.id AND v.version = r.current_version
WHERE r.enabled AND r.object_type = ANY({})
ORDER BY r.position, r.id
"""


@dataclass(frozen=True)
class LoadedRule:
    id: int
    name: str
    object_type: str
    version: int
    version_id: int
    definition: RuleDefinition


@dataclass
class Occurrence:
    """A trigger happening to one record.

    ``kinds`` are the trigger kinds it satisfies ("updated", "field_changed"
    ...), ``changes`` the change as ``{"field": [before, after]}``, and
    ``item`` the pending event that field actions merge into.
    """

    record_type: str
    record_id: int
    kinds: set[str]
    changes: dict[str, Any]
    item: dict[str, Any] | None = None
    depth: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    trigger: str = ""


@dataclass
class Batch:
    """The state that the rule runs of one transaction share."""

    changes: ChangeSet
    rules: list[LoadedRule]
    side_effects: list[SideEffect] = field(default_factory=list)
    runs_per_record: dict[tuple[str, int], int] = field(default_factory=dict)
    actor: tuple[tuple[int, ...], tuple[str, ...]] | None = None


@functools.lru_cache(maxsize=DEFINITION_CACHE_SIZE)
def cached_definition(version_id: int, text: str) -> RuleDefinition:
    # Versions never change, so a version id always decodes the same.
    return decode_definition(text)


async def enabled_rules(record_types: Iterable[str]) -> list[LoadedRule]:
    rows = await EventRow.raw(RULES_SQL, sorted(set(record_types)))
    return [
        LoadedRule(
            id=row["id"],
            name=row["name"],
            object_type=row["object_type"],
            version=row["version"],
            version_id=row["version_id"],
            definition=cached_definition(row["version_id"], row["definition"]),
        )
        for row in rows
    ]


def occurrences_of(item: dict[str, Any]) -> list[Occurrence]:
    """Return the triggers a pending event of a service sets off."""
    kind = str(item["kind"])
    record_type = str(item["record_type"])
    changes = item["changes"] or {}
    if record_type == "comment" and kind == "comment.created":
        if "rule" in changes:
            return []
        for parent in ("deal", "ticket"):
            if isinstance(changes.get(parent), int):
                return [
                    Occurrence(
                        parent,
                        changes[parent],
                        {"comment_received"},
                        {},
                        details={"comment_id": item["record_id"]},
                        trigger="comment_received",
                    )
                ]
        return []
    if record_type not in RECORD_TYPES:
        return []
    verb = kind.rpartition(".")[2]
    if verb == "created":
        return [
            Occurrence(
                record_type,
                item["record_id"],
                {"created"},
                dict(changes),
                item=item,
                trigger="created",
            )
        ]
    if verb == "updated":
        return [
            updated_occurrence(record_type, item["record_id"], dict(changes), item, 0)
        ]
    return []


def updated_occurrence(
    record_type: str,
    record_id: int,
    changes: dict[str, Any],
    item: dict[str, Any] | None,
    depth: int,
) -> Occurrence:
    kinds = {"updated", "field_changed"}
    stage_field = RECORD_TYPES[record_type].stage_field
    if stage_field is not None and stage_field in changes:
        kinds.update(("stage_entered", "stage_left"))
    if record_type == "ticket" and "status" in changes:
        kinds.add("status_changed")
    return Occurrence(
        record_type,
        record_id,
        kinds,
        changes,
        item=item,
        depth=depth,
        trigger="updated",
    )


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def changed_value_is(expected: str, value: Any) -> bool:
    """Compare a "Field changed" trigger's from or to text with a value.

    The text is read as the value's type, as conditions read theirs, so
    "5000" matches an amount of 5000.00 and "High" matches "high".
    """
    if is_empty(value):
        return False
    try:
        return same(expected, value)
    except Mismatch:
        return False


def trigger_matches(trigger: Trigger, occurrence: Occurrence) -> bool:
    kind = trigger.kind
    if kind not in occurrence.kinds:
        return False
    changes = occurrence.changes
    if kind == "field_changed":
        change = changes.get(trigger.field or "")
        if not (isinstance(change, list) and len(change) == 2):
            return False
        if trigger.from_value and not changed_value_is(trigger.from_value, change[0]):
            return False
        return not trigger.to_value or changed_value_is(trigger.to_value, change[1])
    if kind in ("stage_entered", "stage_left"):
        stage_field = RECORD_TYPES[occurrence.record_type].stage_field or ""
        change = changes.get(stage_field)
        if not (isinstance(change, list) and len(change) == 2):
            return False
        value = change[1] if kind == "stage_entered" else change[0]
        return not trigger.stage or as_text(value) == trigger.stage
    if kind == "status_changed":
        change = changes.get("status")
        if not (isinstance(change, list) and len(change) == 2):
            return False
        return not trigger.status or as_text(change[1]) == trigger.status
    return True


def trigger_name(trigger: Trigger, occurrence: Occurrence) -> str:
    return trigger.kind if occurrence.trigger != "created" else "created"


async def actor_facts(batch: Batch) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if batch.actor is None:
        actor_id = batch.changes.actor_id
        user = await load_user(actor_id) if actor_id is not None else None
        batch.actor = (user.team_ids, user.roles) if user else ((), ())
    return batch.actor


async def recent_runs(batch: Batch, record_type: str, record_id: int) -> int:
    key = (record_type, record_id)
    if key not in batch.runs_per_record:
        rows = await EventRow.raw(
            "SELECT count(*) AS runs FROM rule_run WHERE record_type = {} "
            "AND record_id = {} AND outcome = {} "
            "AND created_at > now() - make_interval(secs => {})",
            record_type,
            record_id,
            DONE,
            RATE_WINDOW_SECONDS,
        )
        batch.runs_per_record[key] = int(rows[0]["runs"])
    return batch.runs_per_record[key]


async def log_run(
    rule: LoadedRule,
    occurrence: Occurrence,
    trigger: str,
    outcome: str,
    started: float,
    error: str = "",
    results: list[dict[str, str]] | None = None,
) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    await EventRow.raw(
        "INSERT INTO rule_run (rule, version, record_type, record_id, trigger, "
        "outcome, error, actions, depth, duration_ms) "
        "VALUES ({}, {}, {}, {}, {}, {}, {}, {}::jsonb, {}, {})",
        rule.id,
        rule.version,
        occurrence.record_type,
        occurrence.record_id,
        trigger,
        outcome,
        error[:2000],
        msgspec.json.encode(results or []).decode(),
        occurrence.depth,
        duration_ms,
    )
    log = (
        logger.warning if outcome in (FAILED, LOOP_LIMIT, RATE_LIMITED) else logger.info
    )
    log(
        "rule run rule_id=%s version=%s %s_id=%s trigger=%s outcome=%s depth=%d "
        "duration_ms=%.1f error=%s",
        rule.id,
        rule.version,
        occurrence.record_type,
        occurrence.record_id,
        trigger,
        outcome,
        occurrence.depth,
        duration_ms,
        error or "-",
    )


async def run_rule(
    rule: LoadedRule, occurrence: Occurrence, batch: Batch
) -> dict[str, list[Any]]:
    """Run one rule for an occurrence; return the field changes it made."""
    started = time.perf_counter()
    trigger = trigger_name(rule.definition.trigger, occurrence)
    record_type = RECORD_TYPES[occurrence.record_type]
    if occurrence.depth > MAX_DEPTH:
        await log_run(
            rule,
            occurrence,
            trigger,
            LOOP_LIMIT,
            started,
            f"rules triggered rules more than {MAX_DEPTH} times in one change",
        )
        return {}
    runs = await recent_runs(batch, occurrence.record_type, occurrence.record_id)
    if runs >= RATE_LIMIT:
        await log_run(
            rule,
            occurrence,
            trigger,
            RATE_LIMITED,
            started,
            f"the record had {runs} rule runs in the last {RATE_WINDOW_SECONDS} s",
        )
        return {}

    record = await load_record(record_type, occurrence.record_id)
    if record is None:
        await log_run(rule, occurrence, trigger, SKIPPED, started, "record not found")
        return {}
    teams, roles = await actor_facts(batch)
    facts = Facts(record, occurrence.changes, teams, roles, occurrence.details)
    held, _ = evaluate(rule.definition.conditions, facts)
    if not held:
        await log_run(rule, occurrence, trigger, SKIPPED, started)
        return {}

    context = ActionContext(
        rule_id=rule.id,
        rule_name=rule.name,
        record_type=record_type,
        record=record,
        changes=batch.changes,
        item=occurrence.item,
        trigger_kind=rule.definition.trigger.kind,
        details=occurrence.details,
    )
    pending_before = len(batch.changes.pending)
    item_changes = (
        copy.deepcopy(occurrence.item["changes"]) if occurrence.item else None
    )
    transaction = EventRow._meta.db.current_transaction.get()
    assert transaction is not None, "rules run inside change_set()"
    savepoint = await transaction.savepoint()
    results: list[dict[str, str]] = []
    token = _in_rule.set(True)
    try:
        for action in rule.definition.actions:
            result = await run_action(action, context)
            results.append({"kind": action.kind, "result": result})
    except Exception as error:
        # A failing rule must not cost the triggering change its commit.
        if not isinstance(error, ActionFailed | LookupError | ValueError):
            logger.exception(
                "rule action raised rule_id=%s %s_id=%s",
                rule.id,
                occurrence.record_type,
                occurrence.record_id,
            )
        await savepoint.rollback_to()
        del batch.changes.pending[pending_before:]
        if occurrence.item is not None and item_changes is not None:
            occurrence.item["changes"] = item_changes
        await log_run(rule, occurrence, trigger, FAILED, started, str(error), results)
        return {}
    finally:
        _in_rule.reset(token)
    await savepoint.release()
    batch.runs_per_record[(occurrence.record_type, occurrence.record_id)] = runs + 1
    if context.item is not None and occurrence.item is None:
        # Later rules on this occurrence merge into the event this run made.
        occurrence.item = context.item
    batch.side_effects.extend(context.side_effects)
    await log_run(rule, occurrence, trigger, DONE, started, results=results)
    return context.applied


async def run_occurrences(batch: Batch, occurrences: list[Occurrence]) -> None:
    """Run the matching rules of each occurrence, then those that the field
    changes of these rules trigger, round after round."""
    queue = list(occurrences)
    while queue:
        occurrence = queue.pop(0)
        derived: dict[str, list[Any]] = {}
        for rule in batch.rules:
            if rule.object_type != occurrence.record_type:
                continue
            if not trigger_matches(rule.definition.trigger, occurrence):
                continue
            applied = await run_rule(rule, occurrence, batch)
            for name, (before, after) in applied.items():
                first = derived.get(name, [before, after])[0]
                derived[name] = [first, after]
        if derived:
            queue.append(
                updated_occurrence(
                    occurrence.record_type,
                    occurrence.record_id,
                    derived,
                    occurrence.item,
                    occurrence.depth + 1,
                )
            )


def uses_field_actions(rule: LoadedRule) -> bool:
    return any(action.kind in FIELD_ACTIONS for action in rule.definition.actions)


async def finish(batch: Batch) -> None:
    """Hand the batch's side effects to the change set, whose ``write()``
    records them in the outbox in the same transaction (app.webhooks.outbox)."""
    batch.changes.workflow_seen = len(batch.changes.pending)
    batch.changes.side_effects.extend(batch.side_effects)


async def on_change_set(changes: ChangeSet) -> None:
    """Run the rules that the pending events of ``changes`` trigger.

    A nested change set hands its "created" occurrences to the outermost
    one, so that "created" rules run once the whole record is written: a
    ticket opened from email, for one, gets its first comment and its
    attachments in the outer change set after its own has ended.
    """
    if _in_rule.get():
        changes.workflow_seen = len(changes.pending)
        changes.queued_occurrences.clear()
        return
    items = changes.pending[changes.workflow_seen :]
    own = [occurrence for item in items for occurrence in occurrences_of(item)]
    changes.workflow_seen = len(changes.pending)
    if changes.parent is not None:
        created = [occurrence for occurrence in own if occurrence.trigger == "created"]
        for occurrence in created:
            # The event is written when this change set ends, so the rules'
            # field changes go into an event of their own.
            occurrence.item = None
        changes.root.deferred_occurrences.extend(created)
        own = [occurrence for occurrence in own if occurrence.trigger != "created"]
    occurrences = [
        *changes.deferred_occurrences,
        *own,
        *changes.queued_occurrences,
    ]
    changes.deferred_occurrences.clear()
    changes.queued_occurrences.clear()
    if not occurrences:
        return
    rules = await enabled_rules(occurrence.record_type for occurrence in occurrences)
    if not rules:
        return
    batch = Batch(changes=changes, rules=rules)
    await timers.schedule_for(rules, occurrences)
    await run_occurrences(batch, occurrences)
    await finish(batch)


def queue_trigger(
    changes: ChangeSet,
    trigger: str,
    record_type: str,
    record_id: int,
    details: dict[str, Any],
) -> None:
    """Run the enabled rules with ``trigger`` for one record when ``changes``
    completes, inside its transaction.

    ``trigger`` is one of ``sla.warning``, ``sla.breached`` and
    ``email.received``. ``details`` (JSON values) are what conditions see as
    ``details.<key>`` and placeholders as ``{details.<key>}``. The rules'
    writes commit with the caller's, so a crash loses neither, and their
    events are published with the caller's. Raises ValueError for an
    unknown trigger or record type; errors of the rules are logged as runs.
    """
    if trigger not in FIRED_TRIGGERS:
        raise ValueError(
            f"trigger {trigger!r} is not fired from outside; use one of "
            f"{', '.join(FIRED_TRIGGERS)}"
        )
    if record_type not in RECORD_TYPES:
        raise ValueError(f"record type {record_type!r} has no workflow rules")
    changes.queued_occurrences.append(
        Occurrence(
            record_type,
            record_id,
            {trigger},
            {},
            details=dict(details),
            trigger=trigger,
        )
    )


async def fire(
    trigger: str, record_type: str, record_id: int, details: dict[str, Any]
) -> None:
    """Run the enabled rules with ``trigger`` for one record in a change set of
    its own, or in the open one, which it joins; see ``queue_trigger``."""
    async with change_set(None) as changes:
        queue_trigger(changes, trigger, record_type, record_id, details)


async def run_loaded_rule(
    rule: LoadedRule,
    record_type: RecordType,
    record_id: int,
    trigger: str,
    changes: ChangeSet,
) -> None:
    """Run one rule (a timer's version) for a record inside ``changes``."""
    occurrence = Occurrence(record_type.name, record_id, {trigger}, {}, trigger=trigger)
    batch = Batch(changes=changes, rules=[rule])
    occurrence.kinds.add(rule.definition.trigger.kind)
    await run_rule(rule, occurrence, batch)
    await finish(batch)
