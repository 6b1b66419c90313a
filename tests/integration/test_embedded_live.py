"""A fresh data folder with no servers configured: start, migrate, see a change live."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browserless import Session
from tests.live_frames import next_event
from tests.servers import ROOT, free_port, stop, wait_until_healthy

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(120)]


def crm(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, f"crm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
    }
    env.update(
        CRM_DATA_DIR=str(tmp_path / "data"),
        XDG_RUNTIME_DIR=str(runtime),
        REDIS_PREFIX="crm:",
    )
    return env


async def test_embedded_servers_serve_a_live_change(embedded_env) -> None:
    crm("migrate", env=embedded_env)
    crm("migrate", env=embedded_env)
    demo = crm("demo", env=embedded_env)
    email, password = re.search(r"admin\s+(\S+)\s+(\S+)", demo).groups()

    port = free_port()
    server = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives the call
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=embedded_env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_until_healthy, url, server, 60)
        session = Session(url)
        await session.sign_in(email, password)

        board = (await session.get("/pipelines", follow_redirects=True)).text
        pipeline_id = re.search(r'data-pipeline-id="(\d+)"', board).group(1)
        deal_id, stage = re.search(
            r'id="deal-(\d+)" data-id="\d+" data-stage="(\d+)"', board
        ).groups()
        stages = re.findall(r'data-value="(\d+)"', board)
        target = next(value for value in stages if value != stage)

        socket = await session.live(f"topic=pipeline:{pipeline_id}")
        response = await session.post(
            f"/deals/{deal_id}/stage", {"stage": target, "from_stage": stage}
        )
        assert response.status_code == 204

        message = await next_event(socket)
        assert f"afterbegin:#stage-{target}-cards" in message
        assert f'id="deal-{deal_id}"' in message
        await socket.close()
        await session.close()
    finally:
        stop(server)
