"""Web server subprocesses on free loopback ports, with their output in log files."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.cli import LISTEN_BACKLOG

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_dir: Path,
    port: int | None = None,
) -> Server:
    """Start ``command`` with ``--port <port>`` appended; don't wait for it.

    Without ``port`` a free one is taken. The log is ``<log_dir>/<name>.log``.
    """
    port = port or free_port()
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(name=name, process=process, port=port, log_path=log_path)


def start_app(
    name: str, env: dict[str, str], log_dir: Path, port: int | None = None
) -> Server:
    """Start ``crm serve``, the web application as it is deployed."""
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
    return start(name, command, env, log_dir, port)


def start_minimal(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    port: int | None = None,
    deflate: bool = True,
) -> Server:
    """Start the minimal fan-out app under uvicorn's websockets-sansio.

    With ``deflate`` it accepts permessage-deflate as uvicorn does by
    default; without, it declines it as ``crm serve`` does.
    """
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.minimal_app:create_app",
        "--ws",
        "websockets-sansio",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--backlog",
        str(LISTEN_BACKLOG),
        "--ws-per-message-deflate",
        str(deflate).lower(),
    ]
    return start(name, command, env, log_dir, port)


async def wait_until_healthy(server: Server, seconds: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server {server.name} exited with code "
                    f"{server.process.returncode} before it was ready; "
                    f"its log ends with:\n{server.log_tail()}"
                )
            try:
                response = await client.get(f"{server.url}/health")
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(
        f"server {server.name} at {server.url} was not ready within {seconds} s; "
        f"its log ends with:\n{server.log_tail()}"
    )


async def stop(server: Server) -> None:
    """Stop ``server`` in a thread, so the event loop keeps serving meanwhile.

    The counting proxy runs on that loop, and a server whose database traffic
    it carries cannot finish shutting down while the loop is blocked.
    """
    await asyncio.to_thread(stop_now, server)


def stop_now(server: Server) -> None:
    process = server.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_errors(
    server: Server, keep: int = 3, start: int = 0, end: int | None = None
) -> dict[str, Any]:
    """Count the ERROR lines and tracebacks in a server's log, with the first few.

    ``start`` and ``end`` limit the count to that byte range of the log.
    """
    try:
        with open(server.log_path, "rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(max(0, end - start))
    except OSError:
        return {"errors": 0, "first": []}
    lines = data.decode(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    return {
        "errors": len(errors),
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
        "first": list(dict.fromkeys(line[:200] for line in errors))[:keep],
    }
