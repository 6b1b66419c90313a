"""The time the workflow engine runs at; tests move it with ``shift``."""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + _offset


def shift(delta: dt.timedelta) -> None:
    """Move this process's workflow clock by ``delta`` (tests only)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = dt.timedelta()
