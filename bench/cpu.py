"""CPU time of processes and of the whole machine, read from Linux's /proc.

``utime`` and ``stime`` in /proc/<pid>/stat count every thread of a process,
including threads that have exited, in clock ticks (usually 10 ms).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU seconds that process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name is in brackets and may contain spaces, so split after it.
    fields = text.rpartition(")")[2].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / TICKS_PER_SECOND


def machine_busy_ticks() -> tuple[int, int]:
    """Return (busy, total) ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU used by some processes, and by the machine, between start and stop."""

    pids: dict[str, int]
    started: float = 0.0
    stopped: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    machine_before: tuple[int, int] = (0, 0)
    machine_after: tuple[int, int] = (0, 0)

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = self.sample()
        self.machine_before = machine_busy_ticks()

    def stop(self) -> None:
        self.stopped = time.monotonic()
        self.after = self.sample()
        self.machine_after = machine_busy_ticks()

    def sample(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    @property
    def seconds(self) -> float:
        return self.stopped - self.started

    def used(self, name: str) -> float:
        """Return the CPU seconds that process ``name`` used in the window."""
        return self.after[name] - self.before[name]

    @property
    def machine_busy(self) -> float:
        """Fraction of all CPUs' time that was not idle during the window."""
        busy = self.machine_after[0] - self.machine_before[0]
        total = self.machine_after[1] - self.machine_before[1]
        return busy / total if total else 0.0
