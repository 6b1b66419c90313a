"""CRM_CLOCK_START in real ``crm`` processes."""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import subprocess
import sys

import httpx
import pytest

from tests.servers import ROOT, web_server

pytestmark = pytest.mark.timeout(60)


def test_web_process_runs_at_set_time() -> None:
    start = dt.datetime(2031, 1, 6, 9, 0, tzinfo=dt.UTC)

    with web_server({"CRM_CLOCK_START": start.isoformat()}) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)

    # uvicorn stamps the Date header from the process's wall clock.
    served_at = email.utils.parsedate_to_datetime(response.headers["date"])
    assert response.status_code == 200
    assert start <= served_at < start + dt.timedelta(minutes=1)


def test_invalid_clock_start_stops_worker() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=ROOT,
        env={**os.environ, "CRM_CLOCK_START": "next monday"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert "CRM_CLOCK_START='next monday' is not an ISO 8601 time" in result.stderr
