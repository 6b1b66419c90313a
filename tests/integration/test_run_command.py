"""``crm run``: web and worker in one command, with the worker kept running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import RUN_ID, SERVER_URL, database_url
from tests.servers import ROOT, free_port, wait_until_healthy

RUN_DATABASE = f"crm_test_{RUN_ID}_run"


def admin_url() -> str:
    return database_url(urlsplit(SERVER_URL).path.lstrip("/") or "postgres")


@pytest.fixture
async def run_database() -> Iterator[str]:
    """A database of its own, because ``crm run`` loads the demo data."""
    admin = await asyncpg.connect(admin_url())
    await admin.execute(f'CREATE DATABASE "{RUN_DATABASE}"')
    await admin.close()
    try:
        yield database_url(RUN_DATABASE)
    finally:
        admin = await asyncpg.connect(admin_url())
        await admin.execute(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)')
        await admin.close()


def worker_children(pid: int) -> list[int]:
    """Return the pids of the ``crm worker`` processes that ``pid`` started."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        children.extend(int(child) for child in text.split())
    workers = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"worker" in command:
            workers.append(child)
    return workers


def wait_for_worker(pid: int, other_than: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [child for child in worker_children(pid) if child != other_than]
        if workers:
            return workers[0]
        time.sleep(0.1)
    raise AssertionError(f"no new worker process within {timeout} s")


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.timeout(180)
def test_run_restarts_killed_worker(
    run_database: str, tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--port", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": run_database,
            "REDIS_PREFIX": f"{redis_prefix}run:",
            "CRM_DATA_DIR": str(tmp_path / "data"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, timeout=120)
        first = wait_for_worker(process.pid, None, timeout=30)

        os.kill(first, signal.SIGKILL)
        second = wait_for_worker(process.pid, first, timeout=30)
        assert is_running(second)
        assert process.poll() is None

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while is_running(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_running(second)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    output = (tmp_path / "run.log").read_text()
    assert f"worker exited, restarting in 1 s pid={first} exit_code=-9" in output
    assert f"worker started pid={second}" in output
