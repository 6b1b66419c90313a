"""Run a process at a set time, for tests of timers across restarts.

``CRM_CLOCK_START`` (an ISO 8601 time with a zone, such as
``2027-01-04T09:00:00+00:00``) makes the ``crm`` commands, ``serve`` and
``worker`` among them, start as if the wall clock read that time. The clock
ticks on from there.
Everything that reads the wall clock in the process moves with it: the rules
engine's and the SLA clocks, arq's cron schedule and the timestamps that
Python writes. PostgreSQL's ``now()`` and monotonic clocks keep real time.

It is for tests only and needs the time-machine package, which the ``test``
extra installs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

from app.config import ConfigError

logger = logging.getLogger(__name__)

VARIABLE = "CRM_CLOCK_START"

_traveller: Any = None


def parse_start(raw: str) -> dt.datetime:
    """Parse the value of ``CRM_CLOCK_START``, or raise ConfigError."""
    try:
        start = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ConfigError(
            f"{VARIABLE}={raw!r} is not an ISO 8601 time; "
            "use a form like 2027-01-04T09:00:00+00:00"
        ) from None
    if start.tzinfo is None:
        raise ConfigError(
            f"{VARIABLE}={raw!r} has no time zone; add one, such as +00:00"
        )
    return start


def start_from_env() -> dt.datetime | None:
    """Move this process's wall clock to ``CRM_CLOCK_START`` when it is set.

    Returns the start time, or None when the variable is unset. Raises
    ConfigError for an invalid value or when time-machine is not installed.
    """
    global _traveller
    raw = os.environ.get(VARIABLE, "").strip()
    if not raw:
        return None
    start = parse_start(raw)
    try:
        import time_machine
    except ModuleNotFoundError:
        raise ConfigError(
            f"{VARIABLE} is set but the time-machine package is not installed; "
            "install the test extra or unset the variable"
        ) from None
    _traveller = time_machine.travel(start, tick=True)
    _traveller.start()
    logger.warning("clock moved for testing %s=%s", VARIABLE, start.isoformat())
    return start
