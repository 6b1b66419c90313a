"""Setting a time-based rule's timers for the records that already exist.

Saving or enabling a ``time_after`` rule stores a planning run in
``workflow_timer_plan`` (one row per rule) and, after commit, queues the
``plan_timers`` job, so the request does not wait for the records. The job
reads the records that the rule's SQL prefilter (``app.workflows.prefilter``)
allows by id, in batches of PLAN_BATCH, and evaluates the conditions on
each. Its ``done`` and ``total`` count these candidates, not every record
of the type. Each batch is one transaction
that locks the plan row and stores its position (``done_through``) there.
A second job for the same run, queued again after a stall, therefore
carries on where the first stopped instead of counting records twice.

A save raises the row's ``generation`` under the same lock, so it waits for
at most one batch, and the older run's next batch finds the newer
generation and stops. Runs already made keep their version. Pending timers
keep the version that set them until the newer run reaches their record
and sets them again under the new version.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from app.events.service import ChangeSet, change_set
from app.events.tables import Event as EventRow
from app.workflows.clock import now
from app.workflows.conditions import Facts, evaluate
from app.workflows.prefilter import SqlFilter, candidate_filter
from app.workflows.records import (
    RECORD_TYPES,
    RecordType,
    count_records,
    load_records_after,
)
from app.workflows.schema import RuleDefinition, decode_definition
from app.workflows.timers import CURRENT_RULE, delete_timer, due_time, upsert_timer

logger = logging.getLogger(__name__)

# Records read and planned per transaction.
PLAN_BATCH = 500
# Timers due at once from which the admin pages ask for a confirmation
# before a save or an enabling sets them. The service functions do not ask.
CONFIRM_DUE_AT_ONCE = 50
# Seconds without progress after which a planning run counts as lost and
# is queued again (``resume_timer_plans``).
STALE_SECONDS = 120
PLAN_FUNCTION = "plan_timers"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
PLAN_STATES = (QUEUED, RUNNING, DONE, FAILED)
# The event kind of every change of a plan row, which pushes the rule
# page's progress (app.workflows.live).
PLAN_EVENT = "workflow_timer_plan.progress"

UPSERT_PLAN = """
INSERT INTO workflow_timer_plan (rule, rule_version, created_by)
VALUES ({}, {}, {})
ON CONFLICT (rule) DO UPDATE SET
    rule_version = EXCLUDED.rule_version,
    generation = workflow_timer_plan.generation + 1,
    state = 'queued', done = 0, total = 0, scheduled = 0, due_now = 0,
    done_through = 0, error = '', created_by = EXCLUDED.created_by,
    created_at = now(), updated_at = now()
RETURNING generation
"""

LOCK_PLAN = """
SELECT p.rule_version, p.state, p.done, p.total, p.scheduled, p.due_now,
       p.done_through, v.definition::text AS definition, r.object_type
FROM workflow_timer_plan p
JOIN workflow_rule_version v ON v.id = p.rule_version
JOIN workflow_rule r ON r.id = p.rule
WHERE p.rule = {} AND p.generation = {}
FOR NO KEY UPDATE OF p
"""

# Drops the pending timers of records that the prefilter rules out, which
# planning does not read. The placeholders take the rule, the record type,
# the batch's id bounds and the prefilter's arguments, in that order.
DROP_RULED_OUT = """
DELETE FROM workflow_timer
WHERE rule = {{}} AND record_type = {{}} AND fired_at IS NULL
  AND record_id IN (
    SELECT id FROM {table} WHERE id > {{}}{upper} AND ({where}) IS NOT TRUE
  )
"""

SAVE_PROGRESS = """
UPDATE workflow_timer_plan SET state = {}, done = {}, total = {}, scheduled = {},
    due_now = {}, done_through = {}, updated_at = now()
WHERE rule = {} AND generation = {}
"""


def plan_topic(rule_id: int) -> str:
    """Return the stream of a rule's admin page, which shows its planning."""
    return f"workflow-rule:{rule_id}"


def plan_job_id(rule_id: int, generation: int, attempt: str = "") -> str:
    """Return the arq job id of a planning run, before the prefix.

    arq drops a job whose id is already queued or running, so one run is
    queued once. A run queued again after a stall passes the time of its
    last report as ``attempt``.
    """
    base = f"timer-plan:{rule_id}:{generation}"
    return f"{base}:{attempt}" if attempt else base


@dataclass(frozen=True)
class TimerCounts:
    """The timers a time-based rule would set for the records that exist now.

    ``matching`` counts the records whose conditions hold and that have a
    due time, which get one timer each. ``due_now`` counts those whose timer
    is already due, so it would fire at the next worker tick.
    """

    matching: int
    due_now: int

    @property
    def needs_confirmation(self) -> bool:
        return self.due_now >= CONFIRM_DUE_AT_ONCE

    def as_dict(self) -> dict[str, int]:
        return {"matching": self.matching, "due_now": self.due_now}


NO_TIMERS = TimerCounts(matching=0, due_now=0)


async def plan_record(
    rule_id: int | None, definition: RuleDefinition, record: dict[str, Any]
) -> dt.datetime | None:
    """Return when the rule's timer for ``record`` is due, or None when its
    conditions do not hold or it has no due time."""
    held, _ = evaluate(definition.conditions, Facts(record))
    if not held:
        return None
    try:
        return await due_time(definition.trigger, record)
    except (LookupError, ValueError) as error:
        logger.error(
            "timer not planned rule_id=%s record_id=%s error=%s",
            rule_id,
            record.get("id"),
            error,
        )
        return None


async def count_timers(object_type: str, definition: RuleDefinition) -> TimerCounts:
    """Count the timers ``definition`` would set for the existing records of
    ``object_type``, and how many of them are due at once.

    Reads the records that the rule's SQL prefilter allows, PLAN_BATCH at a
    time, and writes nothing. A rule that is not time-based sets no timers
    for existing records.

    NOTE: the admin pages count in the request before a save or an enabling,
    so that request waits for this read. A rule whose conditions the
    prefilter cannot narrow (see ``app.workflows.prefilter``) still reads
    every record of the type.
    """
    if definition.trigger.kind != "time_after":
        return NO_TIMERS
    record_type = RECORD_TYPES[object_type]
    candidates = candidate_filter(record_type, definition.conditions)
    moment = now()
    matching = due_now = 0
    after_id = 0
    while True:
        records = await load_records_after(
            record_type, after_id, PLAN_BATCH, candidates
        )
        for record in records:
            due = await plan_record(None, definition, record)
            if due is None:
                continue
            matching += 1
            if due <= moment:
                due_now += 1
        if len(records) < PLAN_BATCH:
            return TimerCounts(matching=matching, due_now=due_now)
        after_id = records[-1]["id"]


async def prepare_plan(
    rule_id: int, actor_id: int | None, changes: ChangeSet
) -> int | None:
    """Start a planning run for the rule as it is now; return its generation.

    Runs in the transaction of ``changes``, which queues the job after
    commit. For a rule that is disabled or not time-based, drops its
    pending per-record timers and its planning run instead, and returns None.
    """
    rows = await EventRow.raw(CURRENT_RULE, rule_id)
    definition = decode_definition(rows[0]["definition"]) if rows else None
    if (
        not rows
        or definition is None
        or not rows[0]["enabled"]
        or definition.trigger.kind != "time_after"
    ):
        # The plan row goes first, because a batch under way locks that row
        # before the timer rows. Locking in the same order avoids a deadlock.
        dropped = await EventRow.raw(
            "DELETE FROM workflow_timer_plan WHERE rule = {} RETURNING rule", rule_id
        )
        await EventRow.raw(
            "DELETE FROM workflow_timer WHERE rule = {} AND record_id <> 0 "
            "AND fired_at IS NULL",
            rule_id,
        )
        if dropped:
            changes.add(
                PLAN_EVENT, "workflow_timer_plan", rule_id, [plan_topic(rule_id)]
            )
        return None
    planned = await EventRow.raw(UPSERT_PLAN, rule_id, rows[0]["version_id"], actor_id)
    generation = int(planned[0]["generation"])
    changes.add(
        PLAN_EVENT,
        "workflow_timer_plan",
        rule_id,
        [plan_topic(rule_id)],
        {"state": QUEUED, "generation": generation},
    )

    async def queue_after_commit() -> None:
        await enqueue_plan(rule_id, generation)

    changes.after_commit.append(queue_after_commit)
    return generation


async def enqueue_plan(rule_id: int, generation: int, attempt: str = "") -> str | None:
    """Queue a planning run's job; return its arq id, or None when it waits
    already or Redis failed.

    A failure is logged, not raised, because the save it follows has
    committed; ``resume_timer_plans`` queues the run once it counts as lost.
    """
    from app.workflows.jobs import get_queue

    try:
        queue = await get_queue()
        job = await queue.enqueue_job(
            PLAN_FUNCTION,
            rule_id,
            generation,
            _job_id=plan_job_id(rule_id, generation, attempt),
        )
    except Exception:
        logger.exception(
            "queueing timer planning failed rule_id=%s generation=%s",
            rule_id,
            generation,
        )
        return None
    if job is None:
        return None
    logger.info(
        "timer planning queued rule_id=%s generation=%s job_id=%s",
        rule_id,
        generation,
        job.job_id,
    )
    return str(job.job_id)


async def run_plan(
    rule_id: int, generation: int, job_id: str | None = None
) -> dict[str, Any]:
    """Set the rule's timers for existing records, batch by batch.

    Returns the state reached (``done``, or ``superseded`` when a newer save,
    a disabling or a delete of the rule replaced the run) and the counts. A
    failure stores its error on the run and is raised.
    """
    logger.info(
        "timer planning started rule_id=%s generation=%s job_id=%s",
        rule_id,
        generation,
        job_id,
    )
    try:
        while True:
            progress = await plan_batch(rule_id, generation)
            if progress is None:
                logger.info(
                    "timer planning superseded rule_id=%s generation=%s job_id=%s",
                    rule_id,
                    generation,
                    job_id,
                )
                return {"state": "superseded"}
            if progress["state"] == DONE:
                break
    except Exception as error:
        await record_failure(rule_id, generation, f"{type(error).__name__}: {error}")
        logger.exception(
            "timer planning failed rule_id=%s generation=%s job_id=%s",
            rule_id,
            generation,
            job_id,
        )
        raise
    logger.info(
        "timer planning done rule_id=%s generation=%s records=%d scheduled=%d "
        "due_now=%d job_id=%s",
        rule_id,
        generation,
        progress["done"],
        progress["scheduled"],
        progress["due_now"],
        job_id,
    )
    return progress


async def plan_batch(rule_id: int, generation: int) -> dict[str, Any] | None:
    """Plan the next batch of a run and store its progress; return the
    progress, or None when the run was superseded."""
    async with change_set(None) as changes:
        # The rule's row first, as a delete locks it before the plan row
        # that its cascade removes. A rule deleted meanwhile ends the run.
        rule = await EventRow.raw(
            "SELECT id FROM workflow_rule WHERE id = {} FOR KEY SHARE", rule_id
        )
        if not rule:
            return None
        rows = await EventRow.raw(LOCK_PLAN, rule_id, generation)
        if not rows:
            return None
        plan = dict(rows[0])
        if plan["state"] in (DONE, FAILED):
            return plan
        record_type = RECORD_TYPES[plan["object_type"]]
        definition = decode_definition(plan["definition"])
        candidates = candidate_filter(record_type, definition.conditions)
        if plan["state"] == QUEUED:
            plan["total"] = await count_records(record_type, candidates)
        records = await load_records_after(
            record_type, plan["done_through"], PLAN_BATCH, candidates
        )
        await set_timers(rule_id, plan, record_type, records)
        # A short batch is the last one, so it covers every id after it.
        through = records[-1]["id"] if len(records) == PLAN_BATCH else None
        await drop_ruled_out_timers(
            rule_id, record_type, candidates, plan["done_through"], through
        )
        plan["done"] += len(records)
        if records:
            plan["done_through"] = records[-1]["id"]
        if len(records) < PLAN_BATCH:
            # Records created meanwhile got their timers from their own
            # event, and deleted ones are not counted, so the run ends at
            # the number it looked at.
            plan["state"] = DONE
            plan["total"] = plan["done"]
        else:
            plan["state"] = RUNNING
            plan["total"] = max(plan["total"], plan["done"])
        await EventRow.raw(
            SAVE_PROGRESS,
            plan["state"],
            plan["done"],
            plan["total"],
            plan["scheduled"],
            plan["due_now"],
            plan["done_through"],
            rule_id,
            generation,
        )
        changes.add(
            PLAN_EVENT,
            "workflow_timer_plan",
            rule_id,
            [plan_topic(rule_id)],
            {"state": plan["state"], "done": plan["done"]},
        )
    return plan


async def set_timers(
    rule_id: int,
    plan: dict[str, Any],
    record_type: RecordType,
    records: list[dict[str, Any]],
) -> None:
    """Set or drop the timer of each record; add the counts to ``plan``."""
    definition = decode_definition(plan["definition"])
    moment = now()
    for record in records:
        due = await plan_record(rule_id, definition, record)
        if due is None:
            await delete_timer(rule_id, record_type.name, record["id"])
            continue
        armed = await upsert_timer(
            rule_id, plan["rule_version"], record_type.name, record["id"], due
        )
        if not armed:
            continue
        plan["scheduled"] += 1
        if due <= moment:
            plan["due_now"] += 1


async def drop_ruled_out_timers(
    rule_id: int,
    record_type: RecordType,
    candidates: SqlFilter,
    after_id: int,
    through_id: int | None,
) -> None:
    """Drop the rule's pending timers of the records with ids in
    (``after_id``, ``through_id``] that ``candidates`` rules out.

    Their conditions do not hold, so planning every record would have
    dropped these timers too. ``through_id`` None means no upper bound.
    """
    if candidates.matches_all:
        return
    upper = " AND id <= {}" if through_id is not None else ""
    query = DROP_RULED_OUT.format(
        table=record_type.table._meta.tablename, upper=upper, where=candidates.sql
    )
    bounds = (after_id, through_id) if through_id is not None else (after_id,)
    await EventRow.raw(query, rule_id, record_type.name, *bounds, *candidates.args)


async def record_failure(rule_id: int, generation: int, error: str) -> None:
    async with change_set(None) as changes:
        await EventRow.raw(
            "UPDATE workflow_timer_plan SET state = {}, error = {}, "
            "updated_at = now() WHERE rule = {} AND generation = {}",
            FAILED,
            error,
            rule_id,
            generation,
        )
        changes.add(
            PLAN_EVENT,
            "workflow_timer_plan",
            rule_id,
            [plan_topic(rule_id)],
            {"state": FAILED},
        )


async def get_plan(rule_id: int) -> dict[str, Any] | None:
    """Return the rule's latest planning run, or None when it has none."""
    rows = await EventRow.raw(
        "SELECT rule, rule_version, generation, state, done, total, scheduled, "
        "due_now, error, created_at, updated_at FROM workflow_timer_plan "
        "WHERE rule = {}",
        rule_id,
    )
    return dict(rows[0]) if rows else None


async def stalled_plans(stale_seconds: float = STALE_SECONDS) -> list[dict[str, Any]]:
    """Return the runs that have not reported for ``stale_seconds``.

    A job reports after every batch, so such a run's job was lost with a
    worker that stopped, with the queue, or was never queued because Redis
    failed during the save.
    """
    return await EventRow.raw(
        "SELECT rule, generation, updated_at FROM workflow_timer_plan "
        "WHERE state IN ({}, {}) "
        "AND updated_at < now() - make_interval(secs => {}) ORDER BY rule",
        QUEUED,
        RUNNING,
        stale_seconds,
    )
