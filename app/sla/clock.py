"""The current time for SLA clocks, which tests can set in their own process."""

from __future__ import annotations

import datetime as dt

_fixed: dt.datetime | None = None


def now() -> dt.datetime:
    """Return the current time in UTC, or the time ``set_now`` fixed."""
    return _fixed if _fixed is not None else dt.datetime.now(dt.UTC)


def set_now(value: dt.datetime | None) -> None:
    """Fix the time ``now`` returns in this process; None follows the real clock."""
    global _fixed
    _fixed = value.astimezone(dt.UTC) if value is not None else None
