"""Quieter worker logs: routine cron runs at DEBUG, and a count of them at INFO.

arq logs the start and the end of every job at INFO. The frequent cron jobs
(every three to fifteen seconds) would write over a hundred such lines a
minute. This filter on arq's logger turns the start and successful end of a
cron run into DEBUG records, unless the run took ``slow_seconds`` or more.
It then logs at INFO how many routine runs each cron job had, every
``summary_seconds``. arq's "recording health" line becomes DEBUG too. arq
writes it at each health check (every 30 s in workers.settings) when the job
counts changed, and the check itself still runs and stores its Redis key.
Failures, retries, aborts and every line about other jobs pass unchanged, so
a failed job still shows at ERROR with its id.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable

# The formats of arq's start and end lines of a job (arq 0.28, arq/worker.py).
# Their arguments are (waited seconds, ref, arguments, extra) and
# (run seconds, ref, result). For a cron job, ref is the job's name.
# NOTE: another arq version may word these lines differently, and then they
# stay at INFO; tests/integration/test_worker_logs.py fails when that happens.
START_FORMAT = "%6.2fs → %s(%s)%s"
FINISH_FORMAT = "%6.2fs ← %s ● %s"
# The format of arq's health line (arq 0.28, Worker.record_health).
HEALTH_FORMAT = "recording health: %s"
ARQ_LOGGER = "arq.worker"
# A cron run that takes this long or longer keeps its INFO lines.
SLOW_CRON_SECONDS = 10.0
SUMMARY_SECONDS = 600.0

logger = logging.getLogger(__name__)


class RoutineCronFilter(logging.Filter):
    """Demote the INFO lines of quick, successful cron runs and health checks."""

    def __init__(
        self,
        cron_names: Iterable[str],
        slow_seconds: float = SLOW_CRON_SECONDS,
        summary_seconds: float = SUMMARY_SECONDS,
    ) -> None:
        super().__init__()
        self.cron_names = frozenset(cron_names)
        self.slow_seconds = slow_seconds
        self.summary_seconds = summary_seconds
        self.runs: Counter[str] = Counter()
        self.counting_since = time.monotonic()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_routine(record):
            return True
        if record.msg == FINISH_FORMAT:
            self.count_run(str(record.args[1]))  # type: ignore[index]
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def is_routine(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.args, tuple):
            return False
        if record.msg == HEALTH_FORMAT:
            return True
        if record.msg not in (START_FORMAT, FINISH_FORMAT) or len(record.args) < 2:
            return False
        if record.args[1] not in self.cron_names:
            return False
        if record.msg == START_FORMAT:
            return True
        seconds = record.args[0]
        return isinstance(seconds, int | float) and seconds < self.slow_seconds

    def count_run(self, name: str) -> None:
        self.runs[name] += 1
        elapsed = time.monotonic() - self.counting_since
        if elapsed < self.summary_seconds:
            return
        counts = ", ".join(f"{job}={runs}" for job, runs in sorted(self.runs.items()))
        logger.info(
            "routine cron runs in the last %.0f s, each under %.0f s: %s",
            elapsed,
            self.slow_seconds,
            counts,
        )
        self.runs.clear()
        self.counting_since = time.monotonic()


def quiet_routine_cron_logs(cron_names: Iterable[str]) -> RoutineCronFilter:
    """Install a ``RoutineCronFilter`` on arq's logger, replacing an earlier one."""
    arq_logger = logging.getLogger(ARQ_LOGGER)
    for existing in list(arq_logger.filters):
        if isinstance(existing, RoutineCronFilter):
            arq_logger.removeFilter(existing)
    installed = RoutineCronFilter(cron_names)
    arq_logger.addFilter(installed)
    return installed
