"""Saving, switching, ordering and reading workflow rules and their runs.

Every save of a rule writes a new immutable version and points the rule at
it; runs already started keep the version they loaded. Enabling or
disabling a rule writes a new version too, with the same definition.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from app import fields
from app.errors import FieldError, NotFound, VersionMismatch
from app.events.service import change_set
from app.pagination import Page, PageRequest
from app.workflows.engine import LoadedRule, cached_definition
from app.workflows.mail import check_template_for
from app.workflows.planning import NO_TIMERS, TimerCounts, count_timers, prepare_plan
from app.workflows.records import RECORD_TYPES
from app.workflows.schema import (
    RuleDefinition,
    decode_definition,
    encode_definition,
    parse_definition,
    readable_path,
)
from app.workflows.tables import WorkflowRule
from app.workflows.timers import schedule_rule
from app.workflows.values import check_references_exist, check_values

logger = logging.getLogger(__name__)

MAX_NAME = 200
RUN_OUTCOMES_SHOWN = ("all", "failures")


def check_object_type(object_type: str) -> str:
    if object_type not in RECORD_TYPES:
        raise FieldError(
            "object_type",
            object_type,
            f"is not a workflow object type; use one of {', '.join(RECORD_TYPES)}",
        )
    return object_type


def check_name(raw: str) -> str:
    return fields.text("name", raw, required=True, max_length=MAX_NAME)


async def save_rule(
    rule_id: int | None,
    object_type: str,
    name: str,
    definition: Any,
    actor_id: int | None,
    expected_version: int | None = None,
) -> int:
    """Create a rule (``rule_id`` None, disabled) or save a new version of one.

    ``definition`` is plain data for ``RuleDefinition``. Raises FieldError
    naming the field, and NotFound for an unknown rule, before writing. With
    ``expected_version``, a rule at another version raises VersionMismatch.
    """
    check_object_type(object_type)
    clean_name = check_name(name)
    parsed = parse_definition(object_type, definition)
    try:
        await check_references(object_type, parsed)
    except FieldError as error:
        error.label = readable_path(error.field)
        raise
    text = encode_definition(parsed)

    async with change_set(actor_id) as changes:
        if rule_id is None:
            rows = await WorkflowRule.raw(
                "INSERT INTO workflow_rule "
                "(object_type, name, trigger_kind, position, created_by) "
                "VALUES ({}, {}, {}, (SELECT coalesce(max(position), 0) + 1 "
                "FROM workflow_rule WHERE object_type = {}), {}) RETURNING id",
                object_type,
                clean_name,
                parsed.trigger.kind,
                object_type,
                actor_id,
            )
            rule_id = int(rows[0]["id"])
            version = 1
            kind = "workflow_rule.created"
            changed: dict[str, list[Any]] = {
                "object_type": [None, object_type],
                "name": [None, clean_name],
            }
        else:
            if expected_version is not None:
                await lock_rule(rule_id, expected_version)
            rows = await WorkflowRule.raw(
                "UPDATE workflow_rule AS r SET name = {}, trigger_kind = {}, "
                "current_version = r.current_version + 1, updated_at = now() "
                "FROM workflow_rule AS old WHERE r.id = old.id AND r.id = {} "
                "AND r.object_type = {} "
                "RETURNING r.current_version, old.name AS old_name",
                clean_name,
                parsed.trigger.kind,
                rule_id,
                object_type,
            )
            if not rows:
                raise NotFound("workflow rule", rule_id)
            version = int(rows[0]["current_version"])
            kind = "workflow_rule.updated"
            changed = {"name": [rows[0]["old_name"], clean_name]}
        changed["version"] = [version - 1 or None, version]
        changed["definition"] = [None, json.loads(text)]
        await WorkflowRule.raw(
            "INSERT INTO workflow_rule_version (rule, version, definition, created_by) "
            "VALUES ({}, {}, {}::jsonb, {})",
            rule_id,
            version,
            text,
            actor_id,
        )
        await schedule_rule(rule_id)
        await prepare_plan(rule_id, actor_id, changes)
        changes.add(kind, "workflow_rule", rule_id, [], changed)

    logger.info(
        "workflow rule saved rule_id=%s version=%s user_id=%s",
        rule_id,
        version,
        actor_id,
    )
    return rule_id


async def check_references(object_type: str, definition: RuleDefinition) -> None:
    """Raise FieldError for a reference the definition cannot use.

    These are ids in conditions or triggers, calendars, reply templates,
    users and teams that do not exist, a deactivated user, and a team with
    no active user to notify. A template that uses values the record type
    lacks is rejected too.
    """
    record_type = RECORD_TYPES[object_type]
    await check_references_exist(check_values(record_type, definition))
    calendar_id = definition.trigger.calendar_id
    if calendar_id is not None:
        found = await WorkflowRule.raw(
            "SELECT id FROM sla_calendar WHERE id = {}", calendar_id
        )
        if not found:
            raise FieldError(
                "trigger.calendar_id",
                calendar_id,
                "is not a business calendar; see /admin/sla/calendars",
            )
    for index, action in enumerate(definition.actions):
        path = f"actions.{index}"
        if action.kind in ("notify", "create_task") and action.user_id is not None:
            await check_user(f"{path}.user_id", action.user_id)
        if action.kind == "create_task" and action.user_id is not None:
            await check_task_assignee(f"{path}.user_id", action.user_id, object_type)
        if action.kind in ("notify", "assign") and action.team_id is not None:
            await check_team(f"{path}.team_id", action.team_id, action.kind)
        if action.template_id is None:
            continue
        found = await WorkflowRule.raw(
            "SELECT id, body FROM reply_template WHERE id = {}", action.template_id
        )
        if not found:
            raise FieldError(
                f"actions.{index}.template_id",
                action.template_id,
                "is not a reply template; see /admin/email-templates",
            )
        try:
            check_template_for(record_type, found[0]["body"])
        except FieldError as error:
            raise FieldError(
                f"actions.{index}.template_id",
                action.template_id,
                f"cannot be used on {record_type.name}s: {error.reason}",
            ) from None


async def check_user(path: str, user_id: int) -> None:
    """Raise FieldError unless ``user_id`` is an active user."""
    found = await WorkflowRule.raw("SELECT active FROM app_user WHERE id = {}", user_id)
    if not found:
        raise FieldError(path, user_id, "is not a user")
    if not found[0]["active"]:
        raise FieldError(path, user_id, "is a deactivated user; choose an active user")


async def check_task_assignee(path: str, user_id: int, object_type: str) -> None:
    """Raise FieldError when the user's roles let them edit no record of the
    type: a task goes only to someone who may edit its record, so every run
    would fail. Whether they may edit a given record is known only then."""
    from app.auth.service import load_user

    user = await load_user(user_id)
    if user is not None and not user.access.can(object_type, "edit"):
        raise FieldError(
            path,
            user_id,
            f"is a user whose roles let them edit no {object_type}, so no "
            "task could be created for them; choose someone who may edit it",
        )


async def check_team(path: str, team_id: int, kind: str) -> None:
    """Raise FieldError unless ``team_id`` is a team, and for a notification
    unless the team has an active user to send it to.

    The members are counted as the notify action finds them at run time: the
    users whose team it is, and the team's extra members.
    """
    found = await WorkflowRule.raw(
        "SELECT t.id, EXISTS (SELECT 1 FROM app_user AS u WHERE u.active "
        "AND (u.team = t.id OR u.id IN "
        '(SELECT m."user" FROM team_member AS m WHERE m.team = t.id))) AS staffed '
        "FROM team AS t WHERE t.id = {}",
        team_id,
    )
    if not found:
        raise FieldError(path, team_id, "is not a team; see /admin/teams")
    if kind == "notify" and not found[0]["staffed"]:
        raise FieldError(
            path, team_id, "is a team without active users; add one or choose another"
        )


async def set_enabled(
    rule_id: int,
    enabled: bool,
    actor_id: int | None,
    new_version: bool = True,
) -> None:
    """Enable or disable a rule.

    A switch saves the current definition again as a new version. The
    version is the rule's ETag in the API, so a client that read the rule
    before the switch gets 412 for its next change. ``new_version`` False
    keeps the version, for a rule whose version was saved in the same
    transaction, and a switch to the state the rule is in keeps it too.
    """
    async with change_set(actor_id) as changes:
        rows = await WorkflowRule.raw(
            "UPDATE workflow_rule AS r SET enabled = {}, updated_at = now(), "
            "current_version = r.current_version + CASE WHEN {} AND "
            "r.enabled <> {} THEN 1 ELSE 0 END "
            "FROM workflow_rule AS old WHERE r.id = old.id AND r.id = {} "
            "RETURNING old.enabled AS was_enabled, "
            "old.current_version AS old_version, r.current_version",
            enabled,
            new_version,
            enabled,
            rule_id,
        )
        if not rows:
            raise NotFound("workflow rule", rule_id)
        before, version = int(rows[0]["old_version"]), int(rows[0]["current_version"])
        changed: dict[str, list[Any]] = {"enabled": [rows[0]["was_enabled"], enabled]}
        if version != before:
            await WorkflowRule.raw(
                "INSERT INTO workflow_rule_version "
                "(rule, version, definition, created_by) "
                "SELECT rule, {}, definition, {} FROM workflow_rule_version "
                "WHERE rule = {} AND version = {}",
                version,
                actor_id,
                rule_id,
                before,
            )
            changed["version"] = [before, version]
        await schedule_rule(rule_id)
        await prepare_plan(rule_id, actor_id, changes)
        changes.add("workflow_rule.updated", "workflow_rule", rule_id, [], changed)
    logger.info(
        "workflow rule %s rule_id=%s version=%s user_id=%s",
        "enabled" if enabled else "disabled",
        rule_id,
        version,
        actor_id,
    )


async def count_planned_timers(
    rule_id: int | None, object_type: str, definition: Any
) -> TimerCounts:
    """Count the timers that saving ``definition`` would set for existing
    records, and how many of them would be due at once.

    Only an enabled rule sets them, so a new rule (``rule_id`` None) or a
    disabled one counts none. Raises FieldError as ``save_rule`` does for an
    invalid definition, and NotFound for an unknown rule.
    """
    check_object_type(object_type)
    parsed = parse_definition(object_type, definition)
    if rule_id is None or not (await get_rule(rule_id))["enabled"]:
        return NO_TIMERS
    return await count_timers(object_type, parsed)


async def preview_timers(object_type: str, definition: Any) -> TimerCounts:
    """Count the timers ``definition`` would set for existing records once
    enabled, and how many would be due at once; raises FieldError as
    ``save_rule`` does."""
    check_object_type(object_type)
    return await count_timers(object_type, parse_definition(object_type, definition))


async def count_enabling_timers(rule_id: int) -> TimerCounts:
    """Count the timers that enabling the rule at its current version would
    set for existing records, and how many would be due at once."""
    rule = await get_rule(rule_id)
    definition = decode_definition(rule["definition"])
    return await count_timers(rule["object_type"], definition)


async def move_rule(rule_id: int, direction: str, actor_id: int | None) -> None:
    """Swap a rule with its neighbour above (``up``) or below (``down``)."""
    if direction not in ("up", "down"):
        raise FieldError("direction", direction, "must be up or down")
    async with change_set(actor_id) as changes:
        rows = await WorkflowRule.raw(
            "SELECT id, object_type, position FROM workflow_rule WHERE id = {} "
            "FOR NO KEY UPDATE",
            rule_id,
        )
        if not rows:
            raise NotFound("workflow rule", rule_id)
        rule = rows[0]
        comparison = "<" if direction == "up" else ">"
        order = "DESC" if direction == "up" else "ASC"
        neighbours = await WorkflowRule.raw(
            "SELECT id, position FROM workflow_rule WHERE object_type = {} "
            f"AND (position, id) {comparison} ({{}}, {{}}) "
            f"ORDER BY position {order}, id {order} LIMIT 1 FOR NO KEY UPDATE",
            rule["object_type"],
            rule["position"],
            rule["id"],
        )
        if not neighbours:
            return
        other = neighbours[0]
        # Equal positions would not swap, so the pair gets distinct ones.
        mine, theirs = other["position"], rule["position"]
        if mine == theirs:
            mine = theirs - 1 if direction == "up" else theirs + 1
        await WorkflowRule.raw(
            "UPDATE workflow_rule SET position = {} WHERE id = {}", mine, rule["id"]
        )
        await WorkflowRule.raw(
            "UPDATE workflow_rule SET position = {} WHERE id = {}", theirs, other["id"]
        )
        for moved_id, before, after in (
            (rule["id"], rule["position"], mine),
            (other["id"], other["position"], theirs),
        ):
            changes.add(
                "workflow_rule.updated",
                "workflow_rule",
                moved_id,
                [],
                {"position": [before, after]},
            )
    logger.info(
        "workflow rule moved rule_id=%s direction=%s user_id=%s",
        rule_id,
        direction,
        actor_id,
    )


async def lock_rule(rule_id: int, expected_version: int | None) -> dict[str, Any]:
    """Lock a rule's row for a change in the open transaction and return it.

    Raises NotFound for an unknown rule, and VersionMismatch when
    ``expected_version`` is set and the rule is at another version. The lock
    lets timers that are firing keep their key share lock on the row.
    """
    rows = await WorkflowRule.raw(
        "SELECT id, object_type, name, enabled, current_version FROM workflow_rule "
        "WHERE id = {} FOR NO KEY UPDATE",
        rule_id,
    )
    if not rows:
        raise NotFound("workflow rule", rule_id)
    current = int(rows[0]["current_version"])
    if expected_version is not None and current != expected_version:
        raise VersionMismatch("workflow rule", rule_id, expected_version, current)
    return dict(rows[0])


async def create_rule(
    object_type: str,
    name: str,
    definition: Any,
    enabled: bool,
    actor_id: int | None,
) -> int:
    """Create a rule and, with ``enabled``, enable it in the same transaction.

    Validates as ``save_rule`` does. The caller asks for any confirmation of
    timers due at once first (``timers_to_confirm``).
    """
    async with change_set(actor_id):
        rule_id = await save_rule(None, object_type, name, definition, actor_id)
        if enabled:
            await set_enabled(rule_id, True, actor_id, new_version=False)
    return rule_id


async def update_rule(
    rule_id: int,
    changes: dict[str, Any],
    actor_id: int | None,
    expected_version: int | None,
) -> None:
    """Change a rule's ``name``, ``definition`` or ``enabled``, all or none.

    A new name or definition is saved as a new version (``save_rule``), with
    the current value of the other one, and so is a switch of ``enabled``.
    One call saves at most one version. Raises FieldError, NotFound and
    VersionMismatch (when ``expected_version`` is set) before anything is
    stored.
    """
    async with change_set(actor_id):
        current = await lock_rule(rule_id, expected_version)
        saved = "name" in changes or "definition" in changes
        if saved:
            definition = changes.get("definition")
            if "definition" not in changes:
                definition = json.loads((await get_rule(rule_id))["definition"])
            await save_rule(
                rule_id,
                current["object_type"],
                changes.get("name", current["name"]),
                definition,
                actor_id,
            )
        enabled = changes.get("enabled")
        if enabled is not None and enabled != current["enabled"]:
            await set_enabled(rule_id, enabled, actor_id, new_version=not saved)


async def timers_to_confirm(
    object_type: str, rule: dict[str, Any] | None, definition: Any, enabled: bool
) -> TimerCounts:
    """Count the timers that a create or an update would set for existing
    records, as the admin pages count them before they ask to confirm.

    ``rule`` is the rule as ``get_rule`` returns it, or None for a new one,
    ``definition`` the new definition or None to keep the current one, and
    ``enabled`` whether the rule is enabled afterwards. Only an enabled
    rule sets timers, and only a new definition or an enabling sets them.
    Raises FieldError for an invalid definition.
    """
    if not enabled:
        return NO_TIMERS
    if definition is not None:
        return await preview_timers(object_type, definition)
    if rule is None or rule["enabled"]:
        return NO_TIMERS
    return await count_enabling_timers(rule["id"])


async def deletion_counts(rule_id: int) -> dict[str, Any]:
    """Count what deleting a rule removes or unlinks: its versions, pending
    timers and runs, and the tasks its actions created, with the state of
    its timer planning run (None without one)."""
    rows = await WorkflowRule.raw(
        "SELECT (SELECT count(*) FROM workflow_rule_version WHERE rule = r.id) "
        "AS versions, (SELECT count(*) FROM workflow_timer WHERE rule = r.id "
        "AND fired_at IS NULL) AS pending_timers, "
        "(SELECT count(*) FROM rule_run WHERE rule = r.id) AS runs, "
        "(SELECT count(*) FROM task WHERE task.rule = r.id) AS tasks, "
        "(SELECT state FROM workflow_timer_plan WHERE rule = r.id) AS plan_state "
        "FROM workflow_rule r WHERE r.id = {}",
        rule_id,
    )
    if not rows:
        raise NotFound("workflow rule", rule_id)
    return dict(rows[0])


async def delete_rule(
    rule_id: int, actor_id: int | None, expected_version: int | None = None
) -> dict[str, Any]:
    """Delete a rule and return its row as it was, with its last definition.

    Its versions, timers, planning run and runs go with it (ON DELETE
    CASCADE), and the tasks it created stay without their rule (ON DELETE
    SET NULL). The event, and so the audit row, carries the rule's columns
    and its last definition. Raises NotFound for an unknown rule, and
    VersionMismatch when ``expected_version`` is set and differs.

    The row is locked FOR UPDATE first. A timer that is firing holds a key
    share lock on it from its claim on (``timers.CLAIM_TIMER``), so the
    delete waits for that run to commit, and a claim made while the delete
    holds the lock skips the rule's timers, which the delete then removes.
    """
    async with change_set(actor_id) as changes:
        rows = await WorkflowRule.raw(
            "SELECT r.id, r.object_type, r.name, r.enabled, r.position, "
            "r.current_version, r.trigger_kind, r.created_by, "
            "v.definition::text AS definition "
            "FROM workflow_rule r JOIN workflow_rule_version v "
            "ON v.rule = r.id AND v.version = r.current_version "
            "WHERE r.id = {} FOR UPDATE OF r",
            rule_id,
        )
        if not rows:
            raise NotFound("workflow rule", rule_id)
        row = dict(rows[0])
        current = int(row["current_version"])
        if expected_version is not None and current != expected_version:
            raise VersionMismatch("workflow rule", rule_id, expected_version, current)
        counts = await deletion_counts(rule_id)
        await WorkflowRule.raw("DELETE FROM workflow_rule WHERE id = {}", rule_id)
        row["definition"] = json.loads(row["definition"])
        changed = {
            name: [value, None]
            for name, value in row.items()
            if name not in ("id", "current_version")
        }
        changed["version"] = [current, None]
        changes.add("workflow_rule.deleted", "workflow_rule", rule_id, [], changed)
    logger.info(
        "workflow rule deleted rule_id=%s version=%s user_id=%s versions=%s "
        "pending_timers=%s runs=%s tasks_unlinked=%s plan_state=%s",
        rule_id,
        current,
        actor_id,
        counts["versions"],
        counts["pending_timers"],
        counts["runs"],
        counts["tasks"],
        counts["plan_state"],
    )
    return row


async def list_rules(object_type: str, paging: PageRequest) -> Page[dict[str, Any]]:
    check_object_type(object_type)
    rows = await WorkflowRule.raw(
        "SELECT r.id, r.name, r.enabled, r.position, r.current_version, "
        "r.trigger_kind, r.updated_at, count(*) OVER () AS total, "
        "(SELECT count(*) FROM rule_run x WHERE x.rule = r.id AND x.outcome "
        "IN ('failed', 'loop_limit', 'rate_limited') "
        "AND x.created_at > now() - interval '1 day') AS recent_failures "
        "FROM workflow_rule r WHERE r.object_type = {} "
        "ORDER BY r.position, r.id LIMIT {} OFFSET {}",
        object_type,
        paging.size,
        paging.offset,
    )
    total = int(rows[0]["total"]) if rows else await count_rules(object_type)
    return Page(rows=rows, total=total, paging=paging)


async def count_rules(object_type: str) -> int:
    return int(
        await WorkflowRule.count().where(WorkflowRule.object_type == object_type)
    )


async def get_rule(rule_id: int) -> dict[str, Any]:
    rows = await WorkflowRule.raw(
        "SELECT r.*, v.id AS version_id, v.definition::text AS definition "
        "FROM workflow_rule r JOIN workflow_rule_version v "
        "ON v.rule = r.id AND v.version = r.current_version WHERE r.id = {}",
        rule_id,
    )
    if not rows:
        raise NotFound("workflow rule", rule_id)
    return dict(rows[0])


async def load_rule(rule_id: int) -> LoadedRule:
    """Return a rule at its current version, whether enabled or not."""
    row = await get_rule(rule_id)
    return LoadedRule(
        id=row["id"],
        name=row["name"],
        object_type=row["object_type"],
        version=row["current_version"],
        version_id=row["version_id"],
        definition=cached_definition(row["version_id"], row["definition"]),
    )


async def list_runs(
    rule_id: int, paging: PageRequest, failures_only: bool = False
) -> Page[dict[str, Any]]:
    """Return a rule's runs, newest first; with ``failures_only``, only those
    that failed or were stopped by the loop or rate limit."""
    failure_filter = (
        "AND outcome IN ('failed', 'loop_limit', 'rate_limited') "
        if failures_only
        else ""
    )
    rows = await WorkflowRule.raw(
        "SELECT id, version, record_type, record_id, trigger, outcome, error, "
        "actions::text AS actions, depth, duration_ms, created_at, "
        "count(*) OVER () AS total FROM rule_run "
        f"WHERE rule = {{}} {failure_filter}"
        "ORDER BY id DESC LIMIT {} OFFSET {}",
        rule_id,
        paging.size,
        paging.offset,
    )
    if rows:
        total = int(rows[0]["total"])
    else:
        counted = await WorkflowRule.raw(
            "SELECT count(*) AS total FROM rule_run "
            f"WHERE rule = {{}} {failure_filter}",
            rule_id,
        )
        total = int(counted[0]["total"])
    return Page(rows=rows, total=total, paging=paging)
