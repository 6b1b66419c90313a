"""Progress lines on standard error, so a long run shows what it is doing."""

from __future__ import annotations

import sys
import time

_started = time.monotonic()


def say(message: str) -> None:
    """Print ``message`` to standard error with the seconds since the start."""
    elapsed = time.monotonic() - _started
    print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


class Steps:
    """Numbered steps of a run: ``step`` prints "n/N what is starting"."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def step(self, message: str) -> None:
        self.done += 1
        say(f"{self.done}/{self.total} {message}")
