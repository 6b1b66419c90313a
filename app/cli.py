"""The ``crm`` command line: serve, work, migrate, import and manage users."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import click

from app.auth.tables import ROLES
from app.config import ConfigError, Settings
from app.logs import configure_logging

logger = logging.getLogger(__name__)

T = TypeVar("T")
IMPORT_SOURCES = ("maven", "tickets", "hubspot", "salesforce")
PR_SET_PDEATHSIG = 1


def prepare() -> Settings:
    """Start the embedded servers for unset URLs, then read the settings."""
    from app.embedded import ensure_servers

    # SIGTERM (docker stop, systemd, kill) exits like Ctrl-C does, running
    # the exit handlers that stop the embedded servers this process started.
    signal.signal(signal.SIGTERM, exit_on_signal)
    data_dir = Path(os.environ.get("CRM_DATA_DIR", ".data"))
    try:
        check_set_urls()
        ensure_servers(data_dir)
        return Settings.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def migrate_or_exit() -> None:
    from app.migrate import migrate as run_migrations

    try:
        asyncio.run(run_migrations())
    except (OSError, asyncpg.PostgresError) as error:
        raise click.ClickException(
            f"cannot migrate the database at DATABASE_URL: {error}"
        ) from None


def exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def check_set_urls() -> None:
    """Reject a set but invalid URL before any embedded server starts."""
    from app.config import DATABASE_SCHEMES, REDIS_SCHEMES, check_url

    for name, schemes in (
        ("DATABASE_URL", DATABASE_SCHEMES),
        ("REDIS_URL", REDIS_SCHEMES),
    ):
        if os.environ.get(name, "").strip():
            check_url(os.environ, name, schemes)


def stop_with_parent() -> None:
    """Make the child get SIGTERM when the process that started it dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_with_database(action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action`` with the connection pool open and the bus connected."""

    async def main() -> T:
        from redis.asyncio import Redis

        from app.events.service import set_bus
        from app.piccolo_conf import DB
        from realtime.bus import Bus

        settings = Settings.from_env()
        redis = Redis.from_url(settings.redis_url)
        set_bus(Bus(redis, settings.redis_prefix))
        try:
            await DB.start_connection_pool(min_size=1, max_size=4)
        except (OSError, asyncpg.PostgresError) as error:
            await redis.aclose()
            raise click.ClickException(
                f"cannot connect to the database at DATABASE_URL: {error}"
            ) from None
        try:
            return await action()
        finally:
            set_bus(None)
            await DB.close_connection_pool()
            await redis.aclose()

    return asyncio.run(main())


@click.group()
def main() -> None:
    """Switchboard, a real-time collaborative CRM."""
    configure_logging()


@main.command()
def migrate() -> None:
    """Apply the database migrations (safe to run again)."""
    prepare()
    migrate_or_exit()
    click.echo("Database is up to date.")


@main.command()
@click.option(
    "--host", default=None, help="Address to listen on (default: HOST or 127.0.0.1)."
)
@click.option(
    "--port", default=None, type=int, help="Port to listen on (default: PORT or 8000)."
)
def serve(host: str | None, port: int | None) -> None:
    """Serve the web application."""
    settings = prepare()
    serve_web(host or settings.host, port or settings.port)


def serve_web(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        ws="websockets-sansio",
        proxy_headers=True,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


@main.command()
def worker() -> None:
    """Run the background worker: imports and event log pruning."""
    prepare()
    from arq.worker import run_worker
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.settings import WorkerSettings

    # arq 0.28 lets a lost Redis connection end the worker; start it again,
    # as a process supervisor would, until Redis is back.
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            run_worker(WorkerSettings)  # type: ignore[arg-type]
            return
        except (RedisConnectionError, ConnectionError, OSError) as error:
            if time.monotonic() - started > 60:
                delay = 1.0
            logger.warning("worker lost Redis, restarting in %.0f s: %s", delay, error)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


@main.command()
@click.argument("email")
@click.option("--name", required=True, help="Full name shown to other users.")
@click.option(
    "--role", required=True, type=click.Choice(ROLES), help="The user's role."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)
def createuser(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create a user, or update the name, role and password of an existing one."""
    prepare()
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    from app.auth.service import create_user
    from app.errors import FieldError

    try:
        user = run_with_database(lambda: create_user(email, name, role, password))
    except FieldError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"User {user.email} ({user.role}) saved with id {user.id}.")


@main.command(name="import")
@click.argument("source", type=click.Choice(IMPORT_SOURCES))
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
def import_command(source: str, paths: tuple[Path, ...]) -> None:
    """Import files exported from another system.

    SOURCE names the format: maven (the Maven sales CSVs), tickets (the
    support tickets CSV), hubspot (HubSpot CSV exports) or salesforce
    (sObject tree JSON and report CSVs). PATHS are files or folders.
    """
    prepare()
    from app.imports.service import run_import

    async def progress(done: int, total: int) -> None:
        click.echo(f"\r{done:,} / {total:,} rows", nl=False, err=True)

    from app.imports.report import ImportFileError

    try:
        report = run_with_database(
            lambda: run_import(source, list(paths), on_progress=progress)
        )
    except ImportFileError as file_error:
        raise click.ClickException(str(file_error)) from None
    click.echo("", err=True)
    click.echo(report.summary())
    for row_error in report.errors[:50]:
        click.echo(f"  {row_error}", err=True)
    if len(report.errors) > 50:
        click.echo(f"  … and {len(report.errors) - 50} more row errors", err=True)


@main.command()
def demo() -> None:
    """Load the demo data and create the demo users (once)."""
    prepare()
    from app.demo import load_demo

    for line in run_with_database(load_demo):
        click.echo(line)


@main.command()
@click.option(
    "--host", default=None, help="Address to listen on (default: HOST or 127.0.0.1)."
)
@click.option(
    "--port", default=None, type=int, help="Port to listen on (default: PORT or 8000)."
)
def run(host: str | None, port: int | None) -> None:
    """Migrate, load the demo on first start, then serve web and worker together."""
    settings = prepare()
    from app.demo import load_demo

    migrate_or_exit()
    for line in run_with_database(load_demo):
        click.echo(line)

    worker_process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"], preexec_fn=stop_with_parent
    )
    try:
        serve_web(host or settings.host, port or settings.port)
    finally:
        worker_process.send_signal(signal.SIGINT)
        try:
            worker_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker_process.kill()


if __name__ == "__main__":
    main()
