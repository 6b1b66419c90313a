"""Write changes and their events in one transaction, publish after commit.

Every service that changes a record does so inside ``change_set()``. The
event rows commit with the change, and only then are they published, so a
page never sees an event for a change that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.events.tables import Event as EventRow
from realtime.bus import Bus
from realtime.messages import Event

logger = logging.getLogger(__name__)

_bus: Bus | None = None


def set_bus(bus: Bus | None) -> None:
    """Set the bus that committed events go to (one per process)."""
    global _bus
    _bus = bus


@dataclass
class ChangeSet:
    actor_id: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def add(
        self,
        kind: str,
        record_type: str,
        record_id: int,
        topics: list[str],
        changes: dict[str, Any] | None = None,
    ) -> None:
        self.pending.append(
            {
                "kind": kind,
                "record_type": record_type,
                "record_id": record_id,
                "topics": topics,
                "changes": changes or {},
            }
        )

    async def write(self) -> None:
        """Insert the pending events; must run inside the open transaction."""
        for item in self.pending:
            changes = msgspec.json.decode(msgspec.json.encode(item["changes"]))
            rows = (
                await EventRow.insert(
                    EventRow(
                        kind=item["kind"],
                        topics=item["topics"],
                        record_type=item["record_type"],
                        record_id=item["record_id"],
                        actor_id=self.actor_id,
                        changes=msgspec.json.encode(changes).decode(),
                    )
                )
                .returning(EventRow.id)
                .run()
            )
            self.events.append(
                Event(
                    id=rows[0]["id"],
                    kind=item["kind"],
                    topics=item["topics"],
                    record_type=item["record_type"],
                    record_id=item["record_id"],
                    actor_id=self.actor_id,
                    changes=changes,
                )
            )
        self.pending.clear()


@asynccontextmanager
async def change_set(actor_id: int | None = None) -> AsyncIterator[ChangeSet]:
    """Open a transaction that records events, and publish them after commit."""
    changes = ChangeSet(actor_id=actor_id)
    async with EventRow._meta.db.transaction():
        yield changes
        await changes.write()
    await publish(changes.events)


async def publish(events: list[Event]) -> None:
    if not events:
        return
    if _bus is None:
        # Commands such as `crm import` without a running server still work;
        # open pages catch up on their next load.
        logger.debug("no bus configured, %d events not published", len(events))
        return
    try:
        await _bus.publish(events)
    except Exception:
        # The change is committed; failing the request now would make the
        # user retry a change that already happened.
        # TODO: a relay that republishes committed events from the event
        # table would make this delivery survive a Redis outage.
        logger.exception(
            "publishing failed event_ids=%s", [event.id for event in events]
        )
