"""Run the worker as a child process, and start it again when it exits."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
# A worker that ran this many seconds before it exited restarts after
# FIRST_DELAY again, instead of the last, longer delay.
HEALTHY_RUN = 60.0
# Seconds a stopping worker gets to finish before it is killed.
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


def stop_with_thread() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child get SIGTERM when the thread
    that started it ends (Linux only, else None).

    libc is loaded here in the parent, so that between fork and exec the
    child only makes the system call. Loading a library there can deadlock
    when another thread of the parent held the loader's lock at the fork.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return preexec


class WorkerSupervisor:
    """Keep one worker process running until ``stop``.

    A worker that exits is started again after a delay that doubles from
    ``FIRST_DELAY`` up to ``MAX_DELAY`` while it keeps exiting soon after
    its start. Each worker gets SIGTERM when the supervising thread ends,
    which happens at ``stop`` or when this process dies.
    """

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.preexec_fn = stop_with_thread()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._supervise, name="worker-supervisor", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send the worker SIGINT, kill it after ``STOP_TIMEOUT``, then return."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "worker did not stop within %.0f s, killing it pid=%s",
                    STOP_TIMEOUT,
                    process.pid,
                )
                process.kill()
                process.wait()
        self._thread.join(timeout=STOP_TIMEOUT)

    def _supervise(self) -> None:
        delay = FIRST_DELAY
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                process = subprocess.Popen(self.command, preexec_fn=self.preexec_fn)
                self.process = process
            logger.info("worker started pid=%s", process.pid)

            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return

            if time.monotonic() - started >= HEALTHY_RUN:
                delay = FIRST_DELAY
            self.restarts += 1
            logger.warning(
                "worker exited, restarting in %.0f s pid=%s exit_code=%s restarts=%d",
                delay,
                process.pid,
                code,
                self.restarts,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, MAX_DELAY)
