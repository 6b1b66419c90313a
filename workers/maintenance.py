"""Housekeeping jobs: pruning the event log."""

from __future__ import annotations

import logging
import os
from typing import Any

from app.events.service import prune_events

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 7


def retention_days() -> int:
    """Days events are kept, from EVENT_RETENTION_DAYS (at least 1)."""
    value = os.environ.get("EVENT_RETENTION_DAYS", str(DEFAULT_RETENTION_DAYS))
    try:
        days = int(value)
    except ValueError:
        raise ValueError(
            f"EVENT_RETENTION_DAYS={value!r} is not a whole number"
        ) from None
    if days < 1:
        raise ValueError(f"EVENT_RETENTION_DAYS={value!r} must be 1 or more")
    return days


async def prune_old_events(ctx: dict[str, Any]) -> int:
    """Delete events past the retention window; pages that far behind re-render."""
    days = retention_days()
    logger.info("pruning events older than %d days job_id=%s", days, ctx.get("job_id"))
    return await prune_events(days)
