"""Write changes and their events in one transaction, publish after commit.

Every service that changes a record does so inside ``change_set()``. The
event rows commit with the change and number it in each of its streams.
Only then are they published, so no page receives an event for a change
that was rolled back. Events whose publication failed, because Redis was
down or the process died right after commit, are published later by
``relay_unpublished``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.audit.service import audit_changes
from app.events.tables import Event as EventRow
from app.sla.tracking import track_changes
from app.webhooks.jobs import kick_delivery
from app.webhooks.outbox import record_outbox
from realtime.bus import Bus
from realtime.messages import Event

logger = logging.getLogger(__name__)

_bus: Bus | None = None
# The change set open in this task, so that a nested one joins its transaction.
_open_change_set: ContextVar[ChangeSet | None] = ContextVar(
    "open_change_set", default=None
)

# One statement per event: the event row, the next number in each of its
# streams, and the event's place in them. Streams are numbered in name
# order, so two transactions touching the same streams lock them in the
# same order. The stream row stays locked until commit,
# so numbers are given out in commit order and a rollback leaves no gap.
WRITE_EVENT = """
WITH new_event AS (
    INSERT INTO event
        (kind, topics, record_type, record_id, actor_id, changes, created_at)
    VALUES ({}, {}, {}, {}, {}, {}::jsonb, now())
    RETURNING id
), numbered AS (
    INSERT INTO stream (name, last_seq)
    SELECT name, 1 FROM unnest({}::varchar[]) AS name ORDER BY name
    ON CONFLICT (name) DO UPDATE SET last_seq = stream.last_seq + 1
    RETURNING name, last_seq
), placed AS (
    INSERT INTO event_stream (stream, seq, event)
    SELECT numbered.name, numbered.last_seq, new_event.id FROM numbered, new_event
    RETURNING stream, seq
)
SELECT (SELECT id FROM new_event) AS id,
       (SELECT json_object_agg(stream, seq) FROM placed)::text AS seqs
"""

EVENT_COLUMNS = """
    e.id, e.kind, e.topics, e.record_type, e.record_id, e.actor_id,
    e.changes::text AS changes,
    (SELECT json_object_agg(x.stream, x.seq) FROM event_stream x
     WHERE x.event = e.id)::text AS seqs
"""


# The stream every event is numbered in, which the API's event socket
# follows. Its name sorts before every other stream name, which start with a
# letter, so a transaction's first event locks it before any other stream.
# Every transaction that numbers events therefore takes the stream locks in
# one order ("*" first), and none holds a stream another one waits for while
# it waits for "*".
ALL_EVENTS_STREAM = "*"


def current_change_set() -> ChangeSet | None:
    """Return the change set open in this task, if any."""
    return _open_change_set.get()


def set_bus(bus: Bus | None) -> None:
    """Set the bus that committed events go to (one per process)."""
    global _bus
    _bus = bus


def has_bus() -> bool:
    """Return True in a process whose bus is set, such as a web process."""
    return _bus is not None


@dataclass
class ChangeSet:
    actor_id: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Run once the transaction has committed, such as queueing the job that
    # delivers the outbox messages written here.
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # How many of ``pending`` workflow rules have already been run for.
    workflow_seen: int = 0
    # Side effects of workflow rules (app.workflows.actions.SideEffect),
    # written to the outbox by ``write()``.
    side_effects: list[Any] = field(default_factory=list)
    outbox_kicked: bool = False
    # The change set this one is nested in, whose transaction it joins.
    parent: ChangeSet | None = None
    # Workflow occurrences (app.workflows.engine.Occurrence) to run when
    # this change set completes: "created" occurrences that nested change
    # sets hand to the outermost one, and triggers queued by code such as
    # inbound email and SLA checks.
    deferred_occurrences: list[Any] = field(default_factory=list)
    queued_occurrences: list[Any] = field(default_factory=list)

    @property
    def root(self) -> ChangeSet:
        """The outermost change set, whose commit ends the transaction."""
        changes = self
        while changes.parent is not None:
            changes = changes.parent
        return changes

    def add(
        self,
        kind: str,
        record_type: str,
        record_id: int,
        topics: list[str],
        changes: dict[str, Any] | None = None,
    ) -> None:
        """Queue an event; ``write()`` inserts it with its audit row.

        ``changes`` maps each field to [before, after] for an update. A
        delete should pass ``app.audit.service.snapshot(row, "delete")`` of
        the row it deleted, which is all the audit log keeps of it.
        """
        self.pending.append(
            {
                "kind": kind,
                "record_type": record_type,
                "record_id": record_id,
                "topics": sorted(set(topics)),
                "changes": changes or {},
            }
        )

    async def write(self) -> None:
        """Insert the pending events and their audit rows; must run inside the
        open transaction.

        The audit rows go last because appending takes the audit log's lock,
        which is held until commit.
        """
        # SLA clocks of the tickets changed here move in the same transaction.
        await track_changes(self)
        first_new = len(self.events)
        for item in self.pending:
            changes_json = msgspec.json.encode(item["changes"]).decode()
            streams = [ALL_EVENTS_STREAM, *item["topics"]]
            rows = await EventRow.raw(
                WRITE_EVENT,
                item["kind"],
                item["topics"],
                item["record_type"],
                item["record_id"],
                self.actor_id,
                changes_json,
                streams,
            )
            self.events.append(
                Event(
                    id=rows[0]["id"],
                    kind=item["kind"],
                    topics=item["topics"],
                    record_type=item["record_type"],
                    record_id=item["record_id"],
                    actor_id=self.actor_id,
                    changes=msgspec.json.decode(changes_json),
                    seqs=msgspec.json.decode(rows[0]["seqs"] or "{}"),
                )
            )
        # Webhook messages and rule side effects commit with the change.
        written = await record_outbox(self, self.events[first_new:])
        if written and not self.outbox_kicked:
            self.outbox_kicked = True
            slot = self.events[-1].id if self.events else 0
            self.after_commit.append(functools.partial(kick_delivery, written, slot))
        await audit_changes(self.actor_id, self.pending)
        self.pending.clear()


@asynccontextmanager
async def change_set(actor_id: int | None = None) -> AsyncIterator[ChangeSet]:
    """Open a transaction that records events, and publish them after commit.

    Opened inside another change set, it joins that transaction, and its
    events are published when the outer one commits.
    """
    from app.workflows.engine import on_change_set

    outer = _open_change_set.get()
    changes = ChangeSet(actor_id=actor_id, parent=outer)
    token = _open_change_set.set(changes)
    try:
        async with EventRow._meta.db.transaction():
            yield changes
            # Workflow rules see the complete records, and their field
            # changes commit with this change (app.workflows.engine).
            await on_change_set(changes)
            await changes.write()
    finally:
        _open_change_set.reset(token)
    if outer is not None:
        outer.events.extend(changes.events)
        outer.after_commit.extend(changes.after_commit)
        return
    await publish(changes.events)
    for callback in changes.after_commit:
        await callback()


async def publish(events: list[Event]) -> bool:
    """Publish committed events and mark them published; False if that failed."""
    if not events:
        return True
    if _bus is None:
        # Commands such as `crm import` run without a bus; the relay of a
        # running web process publishes their events.
        return False
    try:
        await _bus.publish(events)
    except Exception as error:
        # The change is committed, so the request still succeeds and the
        # relay publishes the events once Redis is back.
        logger.warning(
            "publishing failed, the relay will retry event_ids=%s error=%s",
            [event.id for event in events],
            error,
        )
        return False

    try:
        await EventRow.raw(
            "UPDATE event SET published_at = now() WHERE id = ANY({})",
            [event.id for event in events],
        )
    except Exception as error:
        # Published but not marked: the relay publishes these again, and
        # pages drop the repeats by sequence number.
        logger.warning(
            "marking events published failed event_ids=%s error=%s",
            [event.id for event in events],
            error,
        )
    return True


async def publish_control(kind: str, changes: dict[str, Any]) -> None:
    """Tell every web process something that is not a change to a record."""
    event = Event(
        id=0, kind=kind, topics=[], record_type="", record_id=0, changes=changes
    )
    if _bus is not None:
        await _bus.publish([event])


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"],
        kind=row["kind"],
        topics=list(row["topics"]),
        record_type=row["record_type"],
        record_id=row["record_id"],
        actor_id=row["actor_id"],
        changes=msgspec.json.decode(row["changes"] or "{}"),
        seqs=msgspec.json.decode(row["seqs"] or "{}"),
    )


async def relay_unpublished(min_age_seconds: float = 2.0, limit: int = 500) -> int:
    """Publish events that committed at least ``min_age_seconds`` ago but never
    reached the bus; return how many.

    Rows are claimed with SKIP LOCKED, so several processes can relay at
    once without publishing an event twice. Pages drop an event they already
    have by its sequence number, in case publication succeeded but marking
    it failed.
    """
    async with EventRow._meta.db.transaction():
        rows = await EventRow.raw(
            f"SELECT {EVENT_COLUMNS} FROM event e "
            "WHERE e.published_at IS NULL "
            "AND e.created_at < now() - make_interval(secs => {}) "
            "ORDER BY e.id LIMIT {} FOR UPDATE SKIP LOCKED",
            min_age_seconds,
            limit,
        )
        events = [event_from_row(row) for row in rows]
        if events and await publish(events):
            logger.info("relayed unpublished events count=%d", len(events))
            return len(events)
    return 0


async def stream_positions(streams: list[str]) -> dict[str, int]:
    """Return the last sequence number of each stream (0 for a new one).

    A page reads these before it reads its data. An event that commits in
    between is then both in the data and replayed, which is harmless,
    rather than in neither.
    """
    rows = await EventRow.raw(
        "SELECT name, last_seq FROM stream WHERE name = ANY({})", streams
    )
    found = {row["name"]: row["last_seq"] for row in rows}
    return {stream: found.get(stream, 0) for stream in streams}


async def events_after(stream: str, after: int, limit: int) -> tuple[list[Event], bool]:
    """Return up to ``limit`` events of ``stream`` after sequence ``after``.

    The flag is False when the stream cannot be replayed from there, because
    more than ``limit`` events are missing or some were pruned: the page
    then needs a fresh render instead.
    """
    # One round trip: the stream's last number comes with the events, so an
    # empty result distinguishes "up to date" from "pruned".
    rows = await EventRow.raw(
        "SELECT s.last_seq, missed.* FROM stream s LEFT JOIN LATERAL ("
        f"SELECT {EVENT_COLUMNS}, es.seq FROM event_stream es "
        "JOIN event e ON e.id = es.event "
        "WHERE es.stream = s.name AND es.seq > {} ORDER BY es.seq LIMIT {}"
        ") missed ON true WHERE s.name = {}",
        after,
        limit + 1,
        stream,
    )
    if not rows:
        # A stream nothing has been written to yet.
        return [], after == 0
    if rows[0]["id"] is None:
        return [], rows[0]["last_seq"] == after
    if len(rows) > limit or rows[0]["seq"] != after + 1:
        return [], False
    return [event_from_row(row) for row in rows], True


async def prune_events(retention_days: int, batch: int = 5000) -> int:
    """Delete events older than ``retention_days``; return how many."""
    deleted = 0
    while True:
        rows = await EventRow.raw(
            "DELETE FROM event WHERE id IN (SELECT id FROM event "
            "WHERE created_at < now() - make_interval(days => {}) LIMIT {}) "
            "RETURNING id",
            retention_days,
            batch,
        )
        deleted += len(rows)
        if len(rows) < batch:
            break
        logger.info("pruning events deleted=%d so far", deleted)
    logger.info("events pruned deleted=%d retention_days=%d", deleted, retention_days)
    return deleted
