"""Find SLA clocks that are about to breach or have breached, once each.

Each clock is marked in its own transaction under a row lock (SKIP LOCKED),
so a warning or breach is recorded once even when several workers run the
check at the same time. The "SLA warning" and "SLA breached" rules run in
that transaction too, so the mark and the rules' changes commit together
(or not at all, and the next check tries the clock again) and pages get
them in one update.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app.events.service import change_set
from app.sla import clock
from app.sla.tables import SlaClock
from app.sla.tracking import SLA_EVENT
from app.workflows.engine import queue_trigger

logger = logging.getLogger(__name__)

BATCH = 200

DUE_CLOCKS = """
    SELECT c.id FROM sla_clock c JOIN ticket_sla s ON s.ticket = c.ticket
    WHERE c.stopped_at IS NULL AND c.breached_at IS NULL AND s.paused_at IS NULL
      AND (c.due_at <= {} OR (c.warned_at IS NULL AND c.warn_at <= {}))
    ORDER BY c.due_at, c.id
    LIMIT {}
"""

LOCK_CLOCK = """
    SELECT c.*, s.priority, s.policy, t.team
    FROM sla_clock c
    JOIN ticket_sla s ON s.ticket = c.ticket
    JOIN ticket t ON t.id = c.ticket
    WHERE c.id = {} AND c.stopped_at IS NULL AND c.breached_at IS NULL
      AND s.paused_at IS NULL
    FOR UPDATE OF c SKIP LOCKED
"""


async def check_clock(clock_id: int, now: dt.datetime) -> str | None:
    """Mark one clock warned or breached; return the trigger sent, if any."""
    async with change_set(None) as changes:
        rows = await SlaClock.raw(LOCK_CLOCK, clock_id)
        if not rows:
            return None
        row = rows[0]
        if row["due_at"] <= now:
            trigger = "sla.breached"
            # A clock that breaches before it was warned gets no warning after.
            values: dict[Any, Any] = {
                SlaClock.breached_at: now,
                SlaClock.warned_at: row["warned_at"] or now,
            }
        elif row["warned_at"] is None and row["warn_at"] <= now:
            trigger = "sla.warning"
            values = {SlaClock.warned_at: now}
        else:
            return None
        await SlaClock.update(values).where(SlaClock.id == clock_id)

        ticket_id = row["ticket"]
        details = {
            "metric": row["metric"],
            "due_at": row["due_at"].isoformat(),
            "target_seconds": row["target_seconds"],
            "priority": row["priority"],
            "policy_id": row["policy"],
            "team_id": row["team"],
            "clock_id": clock_id,
        }
        changes.add(
            SLA_EVENT,
            "ticket",
            ticket_id,
            ["tickets", f"ticket:{ticket_id}"],
            {"sla": trigger},
        )
        queue_trigger(changes, trigger, "ticket", ticket_id, details)

    logger.info(
        "%s ticket_id=%s clock_id=%s metric=%s",
        trigger,
        ticket_id,
        clock_id,
        row["metric"],
    )
    return trigger


async def detect_breaches(now: dt.datetime | None = None) -> dict[str, int]:
    """Warn about and breach every due clock; return how many of each."""
    moment = now or clock.now()
    counts = {"sla.warning": 0, "sla.breached": 0, "failed": 0}
    while True:
        rows = await SlaClock.raw(DUE_CLOCKS, moment, moment, BATCH)
        progress = False
        for row in rows:
            try:
                trigger = await check_clock(row["id"], moment)
            except Exception:
                # Rolled back, so the next check tries this clock again.
                logger.exception("sla check failed clock_id=%s", row["id"])
                counts["failed"] += 1
                continue
            if trigger is not None:
                counts[trigger] += 1
                progress = True
        # A full batch that changed nothing is locked by other transactions,
        # so the next check takes it up instead of this one spinning.
        if len(rows) < BATCH or counts["failed"] or not progress:
            return counts
