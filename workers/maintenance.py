"""Housekeeping jobs: pruning the event log and finished outbox messages."""

from __future__ import annotations

import logging
import os
from typing import Any

from app.events.service import prune_events
from app.webhooks.tables import OutboxMessage

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 7
# Delivered and failed outbox messages (with their delivery log) stay this
# long, so that admins can look at and redeliver them.
DEFAULT_OUTBOX_RETENTION_DAYS = 30


def retention_days(
    variable: str = "EVENT_RETENTION_DAYS", default: int = DEFAULT_RETENTION_DAYS
) -> int:
    """Days to keep rows, from the environment ``variable`` (at least 1)."""
    value = os.environ.get(variable, str(default))
    try:
        days = int(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r} is not a whole number") from None
    if days < 1:
        raise ValueError(f"{variable}={value!r} must be 1 or more")
    return days


async def prune_old_events(ctx: dict[str, Any]) -> int:
    """Delete events past the retention window; pages that far behind re-render.

    Finished outbox messages past theirs go too.
    """
    days = retention_days()
    logger.info("pruning events older than %d days job_id=%s", days, ctx.get("job_id"))
    pruned = await prune_events(days)
    outbox_days = retention_days("OUTBOX_RETENTION_DAYS", DEFAULT_OUTBOX_RETENTION_DAYS)
    finished = await OutboxMessage.raw(
        "WITH gone AS (DELETE FROM outbox_message WHERE status <> 'pending' "
        "AND finished_at < now() - make_interval(days => {}) RETURNING 1) "
        "SELECT count(*) AS count FROM gone",
        outbox_days,
    )
    logger.info(
        "pruned outbox messages older than %d days count=%d job_id=%s",
        outbox_days,
        finished[0]["count"],
        ctx.get("job_id"),
    )
    return pruned
