"""Time-based and scheduled rules: stored timers that an arq cron fires.

A ``time_after`` rule gets one pending timer per record, due a delay after
one of the record's date fields, and moved whenever that field changes. A
``scheduled`` rule gets one pending timer (record 0) for its next run. The
cron claims due timers with ``FOR UPDATE SKIP LOCKED`` and fires each in the
transaction that marks it fired, so a timer fires once even with several
workers, and a timer due while no worker ran fires at the next tick.
The timers of records that exist when a time-based rule is enabled or saved
are set by a job (``app.workflows.planning``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from app.events.service import change_set
from app.events.tables import Event as EventRow
from app.workflows.clock import now
from app.workflows.prefilter import candidate_filter
from app.workflows.records import RECORD_TYPES, load_record, record_ids_after
from app.workflows.schema import Schedule, Trigger, decode_definition

if TYPE_CHECKING:
    from app.workflows.engine import LoadedRule, Occurrence

logger = logging.getLogger(__name__)

# Timers fired per cron tick, one transaction each.
TIMERS_PER_TICK = 100
# Records a scheduled rule runs over in one transaction, by id. Only the
# records that the rule's SQL prefilter allows count (app.workflows.prefilter).
# A run over more records takes several claims of its timer, which keeps its
# due time and the last id handled (``done_through``) until the last batch.
SCHEDULE_BATCH = 500

UPSERT_TIMER = """
INSERT INTO workflow_timer (rule, rule_version, record_type, record_id, due_at)
VALUES ({}, {}, {}, {}, {})
ON CONFLICT (rule, record_type, record_id) WHERE fired_at IS NULL
DO UPDATE SET due_at = EXCLUDED.due_at, rule_version = EXCLUDED.rule_version
"""

# Waits for a firing that has locked the record's pending timer, so that the
# FIRED_AT_DUE check after it reads what that firing committed.
LOCK_PENDING = """
SELECT id FROM workflow_timer
WHERE rule = {} AND record_type = {} AND record_id = {} AND fired_at IS NULL
FOR UPDATE
"""

FIRED_AT_DUE = """
SELECT 1 FROM workflow_timer
WHERE rule = {} AND record_type = {} AND record_id = {} AND due_at = {}
  AND fired_at IS NOT NULL
LIMIT 1
"""

# The claim also takes a key share lock on the rule's row, which a delete
# waits for, so a rule is not deleted while its timer fires. A timer whose
# rule a delete has locked is skipped, and the delete removes it. Without
# this lock the firing transaction would lock the rule only when it writes
# the run, after the delete locked the rule and waited for the timer: a
# deadlock.
CLAIM_TIMER = """
SELECT t.id, t.rule, t.record_type, t.record_id, t.due_at, t.done_through,
       v.id AS version_id, v.version, v.definition::text AS definition,
       r.name, r.object_type, r.enabled
FROM workflow_timer t
JOIN workflow_rule_version v ON v.id = t.rule_version
JOIN workflow_rule r ON r.id = t.rule
WHERE t.fired_at IS NULL AND t.due_at <= {}
ORDER BY t.due_at, t.id
LIMIT 1
FOR UPDATE OF t SKIP LOCKED
FOR KEY SHARE OF r SKIP LOCKED
"""


async def add_time(
    start: dt.datetime, minutes: int, calendar_id: int | None
) -> dt.datetime:
    """Add ``minutes`` to ``start``, in business hours when a calendar is set."""
    delay = dt.timedelta(minutes=minutes)
    if calendar_id is None:
        return start + delay
    from app.sla.calendars import add_business_time

    return await add_business_time(calendar_id, start, delay)


def as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return None


async def due_time(trigger: Trigger, record: dict[str, Any]) -> dt.datetime | None:
    start = as_datetime(record.get(trigger.after or "updated_at"))
    if start is None:
        return None
    return await add_time(start, trigger.delay_minutes or 0, trigger.calendar_id)


def next_run(schedule: Schedule, after: dt.datetime) -> dt.datetime:
    """Return the first time after ``after`` (UTC) that ``schedule`` names."""
    moment = after.astimezone(dt.UTC).replace(second=0, microsecond=0)
    if schedule.every == "hourly":
        candidate = moment.replace(minute=schedule.minute)
        step = dt.timedelta(hours=1)
    else:
        candidate = moment.replace(hour=schedule.hour, minute=schedule.minute)
        step = dt.timedelta(days=1)
        if schedule.every == "weekly":
            days = (schedule.weekday - candidate.weekday()) % 7
            candidate += dt.timedelta(days=days)
            step = dt.timedelta(days=7)
    while candidate <= after:
        candidate += step
    return candidate


async def upsert_timer(
    rule_id: int, version_id: int, record_type: str, record_id: int, due: dt.datetime
) -> bool:
    """Arm the record's timer at ``due``, or move its pending one there.

    A rule fires once per record and due time. Planning can reach a record
    whose timer at ``due`` already fired. Then nothing is armed, any pending
    timer of the record is dropped, and the result is False.
    """
    # A firing locks its timer from the claim until it commits. Without this
    # wait, the check below could miss that firing, and the upsert, once the
    # fired row leaves the partial unique index, would arm a second timer.
    await EventRow.raw(LOCK_PENDING, rule_id, record_type, record_id)
    fired = await EventRow.raw(FIRED_AT_DUE, rule_id, record_type, record_id, due)
    if fired:
        await delete_timer(rule_id, record_type, record_id)
        return False
    await EventRow.raw(UPSERT_TIMER, rule_id, version_id, record_type, record_id, due)
    return True


async def schedule_for(rules: list[LoadedRule], occurrences: list[Occurrence]) -> None:
    """Set or move the timers of ``time_after`` rules for changed records."""
    for occurrence in occurrences:
        if not occurrence.kinds & {"created", "updated"}:
            continue
        for rule in rules:
            trigger = rule.definition.trigger
            if (
                trigger.kind != "time_after"
                or rule.object_type != occurrence.record_type
            ):
                continue
            after = trigger.after or "updated_at"
            moved = "created" in occurrence.kinds or after == "updated_at"
            if not (moved or after in occurrence.changes):
                continue
            record = await load_record(
                RECORD_TYPES[occurrence.record_type], occurrence.record_id
            )
            try:
                due = await due_time(trigger, record) if record else None
            except (LookupError, ValueError) as error:
                logger.error(
                    "timer not set rule_id=%s %s_id=%s error=%s",
                    rule.id,
                    occurrence.record_type,
                    occurrence.record_id,
                    error,
                )
                continue
            if due is None:
                await delete_timer(
                    rule.id, occurrence.record_type, occurrence.record_id
                )
                continue
            await upsert_timer(
                rule.id,
                rule.version_id,
                occurrence.record_type,
                occurrence.record_id,
                due,
            )


CURRENT_RULE = """
SELECT r.enabled, r.object_type, v.id AS version_id, v.definition::text AS definition
FROM workflow_rule r
JOIN workflow_rule_version v ON v.rule = r.id AND v.version = r.current_version
WHERE r.id = {}
"""


async def schedule_rule(rule_id: int) -> None:
    """Set the next run of a scheduled rule, or drop its timer when the rule is
    disabled or no longer scheduled. Runs in the caller's transaction."""
    rows = await EventRow.raw(CURRENT_RULE, rule_id)
    await EventRow.raw(
        "DELETE FROM workflow_timer WHERE rule = {} AND record_id = 0 "
        "AND fired_at IS NULL",
        rule_id,
    )
    if not rows or not rows[0]["enabled"]:
        return
    definition = decode_definition(rows[0]["definition"])
    schedule = definition.trigger.schedule
    if definition.trigger.kind != "scheduled" or schedule is None:
        return
    due = next_run(schedule, now())
    await upsert_timer(rule_id, rows[0]["version_id"], rows[0]["object_type"], 0, due)


async def fire_one_timer() -> bool:
    """Fire the earliest due timer, or one batch of a scheduled rule's run;
    return False when none is due."""
    from app.workflows.engine import LoadedRule, run_loaded_rule

    async with change_set(None) as changes:
        rows = await EventRow.raw(CLAIM_TIMER, now())
        if not rows:
            return False
        row = rows[0]
        if not row["enabled"]:
            await mark_fired(row["id"])
            logger.info("timer of a disabled rule dropped timer_id=%s", row["id"])
            return True
        rule = LoadedRule(
            id=row["rule"],
            name=row["name"],
            object_type=row["object_type"],
            version=row["version"],
            version_id=row["version_id"],
            definition=decode_definition(row["definition"]),
        )
        record_type = RECORD_TYPES[row["record_type"]]
        trigger = rule.definition.trigger.kind
        if row["record_id"]:
            await mark_fired(row["id"])
            await run_loaded_rule(rule, record_type, row["record_id"], trigger, changes)
        else:
            # The ids are read before the batch's runs. A run that changes
            # another record so that it matches does not add it to this run.
            record_ids = await record_ids_after(
                record_type,
                row["done_through"],
                SCHEDULE_BATCH,
                candidate_filter(record_type, rule.definition.conditions),
            )
            for record_id in record_ids:
                await run_loaded_rule(rule, record_type, record_id, trigger, changes)
            if len(record_ids) == SCHEDULE_BATCH:
                # More records may follow: the timer stays due for the next batch.
                await EventRow.raw(
                    "UPDATE workflow_timer SET done_through = {} WHERE id = {}",
                    record_ids[-1],
                    row["id"],
                )
                logger.info(
                    "scheduled rule batch ran timer_id=%s rule_id=%s records=%d "
                    "done_through=%s",
                    row["id"],
                    rule.id,
                    len(record_ids),
                    record_ids[-1],
                )
                return True
            await mark_fired(row["id"])
            schedule = rule.definition.trigger.schedule
            if schedule is not None:
                due = next_run(schedule, max(now(), row["due_at"]))
                await upsert_timer(rule.id, rule.version_id, record_type.name, 0, due)
        logger.info(
            "timer fired timer_id=%s rule_id=%s %s_id=%s late_s=%.1f",
            row["id"],
            rule.id,
            row["record_type"],
            row["record_id"],
            (now() - row["due_at"]).total_seconds(),
        )
    return True


async def mark_fired(timer_id: int) -> None:
    await EventRow.raw(
        "UPDATE workflow_timer SET fired_at = {} WHERE id = {}", now(), timer_id
    )


async def fire_due_timers(limit: int = TIMERS_PER_TICK) -> int:
    """Fire up to ``limit`` due timers; return how many fired."""
    fired = 0
    while fired < limit and await fire_one_timer():
        fired += 1
    return fired


async def delete_timer(rule_id: int, record_type: str, record_id: int) -> None:
    await EventRow.raw(
        "DELETE FROM workflow_timer WHERE rule = {} AND record_type = {} "
        "AND record_id = {} AND fired_at IS NULL",
        rule_id,
        record_type,
        record_id,
    )
