"""The ``crm`` command line: serve, work, migrate, import and manage users."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
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
IMPORT_SOURCES = ("maven", "tickets", "hubspot", "salesforce", "leads")
PR_SET_PDEATHSIG = 1


def prepare() -> Settings:
    """Start the embedded servers for unset URLs, then read the settings."""
    from app.email.settings import EmailSettings
    from app.embedded import ensure_servers
    from app.time_travel import start_from_env

    # SIGTERM (docker stop, systemd, kill) exits like Ctrl-C does, running
    # the exit handlers that stop the embedded servers this process started.
    signal.signal(signal.SIGTERM, exit_on_signal)
    data_dir = Path(os.environ.get("CRM_DATA_DIR", ".data"))
    try:
        check_set_urls()
        ensure_servers(data_dir)
        settings = Settings.from_env()
        # Checked here so that an invalid EMAIL_* setting stops the command
        # at start rather than failing the first request that reads it.
        EmailSettings.from_env()
        # Tests start processes at a set time (app.time_travel).
        start_from_env()
        return settings
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

        from app.db import start_pool
        from app.events.service import set_bus
        from app.piccolo_conf import DB
        from realtime.bus import Bus

        settings = Settings.from_env()
        redis = Redis.from_url(settings.redis_url)
        set_bus(Bus(redis, settings.redis_prefix))
        try:
            await start_pool(DB, min_size=1, max_size=4)
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
    serve_web(host or settings.host, port or settings.port, settings)


# After a restart every page reconnects within a second or two. A short
# listen queue drops the excess connection attempts into TCP's retry timers,
# which wait seconds. The kernel caps the queue at net.core.somaxconn.
LISTEN_BACKLOG = 16384


class QuietWebsocketLog(logging.Filter):
    """Drop uvicorn's lines for every socket opened and closed.

    Each page keeps a socket open and reopens it after every restart, so
    these lines would outnumber all others. Failures are still logged.
    """

    CHATTER = ("connection open", "connection closed")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return message not in self.CHATTER and not message.endswith("[accepted]")


def serve_web(host: str, port: int, settings: Settings) -> None:
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(QuietWebsocketLog())
    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        ws="websockets-sansio",
        # Live frames are short HTML fragments: compressing them saves little
        # on the wire and costs a zlib context (about 64 KiB) per socket and
        # CPU on every frame.
        ws_per_message_deflate=False,
        backlog=LISTEN_BACKLOG,
        # X-Forwarded-Proto from these addresses sets the request's scheme,
        # which decides HSTS and Secure cookies.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
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
    support tickets CSV), hubspot (HubSpot CSV exports), salesforce
    (sObject tree JSON and report CSVs) or leads (the X Education
    Leads.csv, as closed leads). PATHS are files or folders.
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

    from workers.supervisor import WorkerSupervisor

    # The worker is started again, with a growing delay, whenever it exits.
    supervisor = WorkerSupervisor([sys.executable, "-m", "app.cli", "worker"])
    supervisor.start()
    try:
        serve_web(host or settings.host, port or settings.port, settings)
    finally:
        supervisor.stop()


@main.group()
def keys() -> None:
    """Manage the keys that encrypt sensitive fields (CRM_ENCRYPTION_KEYS)."""


@keys.command(name="generate")
@click.option(
    "--id", "key_id", default=None, help="Key id (default: k and the UTC time)."
)
def generate_key(key_id: str | None) -> None:
    """Print a new key as id:key, to put first in CRM_ENCRYPTION_KEYS."""
    from app.encryption.keyring import KeyringError, new_key_entry

    try:
        click.echo(new_key_entry(key_id))
    except KeyringError as error:
        raise click.ClickException(str(error)) from None


@keys.command(name="rotate")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Values re-encrypted per UPDATE statement.",
)
def rotate_keys(batch_size: int) -> None:
    """Re-encrypt every encrypted value under the first key.

    Start the web and worker processes with the new key first and the old
    ones after it, run this, then remove the old keys.
    """
    settings = prepare()
    from app.encryption.keyring import DecryptionError
    from app.encryption.rotation import Progress, rotate_all

    async def progress(step: Progress) -> None:
        click.echo(
            f"\r{step.column}: {step.done:,} / {step.total:,}", nl=False, err=True
        )
        if step.done >= step.total:
            click.echo("", err=True)

    try:
        left = run_with_database(
            lambda: rotate_all(settings.encryption_keys, batch_size, progress)
        )
    except DecryptionError as error:
        raise click.ClickException(str(error)) from None
    current = settings.encryption_keys.current_id
    for column, count in left.items():
        if count:
            click.echo(
                f"{column}: {count:,} values are still under other keys; a process "
                f"still encrypts with an old key. Restart it with {current!r} "
                "first and run this again.",
                err=True,
            )
    if any(left.values()):
        raise SystemExit(1)
    click.echo(f"Every encrypted value is under key {current!r}.")


@keys.command(name="status")
def key_status() -> None:
    """Count the encrypted values of each column by the id of their key."""
    prepare()
    from app.encryption.rotation import count_by_key

    counts = run_with_database(count_by_key)
    for column, by_key in counts.items():
        shown = ", ".join(f"{key_id}: {n:,}" for key_id, n in by_key.items())
        click.echo(f"{column}: {shown or 'no values'}")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the SMTP receiver listens on.",
)
@click.option(
    "--port",
    default=2525,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port the SMTP receiver listens on.",
)
@click.option(
    "--max-size",
    default=None,
    type=click.IntRange(1),
    help="Largest message accepted, in bytes (default: EMAIL_MAX_MESSAGE_BYTES).",
)
def smtp(host: str, port: int, max_size: int | None) -> None:
    """Receive mail over SMTP and turn it into tickets and replies."""
    import dataclasses

    prepare()
    from app.email.settings import EmailSettings
    from app.email.smtp import serve_smtp

    try:
        email_settings = EmailSettings.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if max_size is not None:
        email_settings = dataclasses.replace(email_settings, max_message_bytes=max_size)
    click.echo(f"Receiving mail on {host}:{port}", err=True)
    try:
        run_with_database(lambda: serve_smtp(host, port, email_settings))
    except OSError as error:
        raise click.ClickException(
            f"cannot listen for SMTP on {host}:{port}: {error}"
        ) from None


@main.group()
def audit() -> None:
    """Check the audit log."""


@audit.command(name="verify")
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Audit rows read per query.",
)
def audit_verify(batch_size: int) -> None:
    """Check the hash and link of every audit row, oldest first.

    Exits with status 1 at the first row that does not match. The last
    row's hash is printed so that it can be kept elsewhere: removing the
    newest rows leaves a chain that verifies, unless it is compared.
    """
    prepare()
    from app.audit.verify import verify_chain

    async def progress(done: int, total: int) -> None:
        click.echo(f"\r{done:,} / {total:,} rows", nl=False, err=True)

    result = run_with_database(lambda: verify_chain(batch_size, progress))
    click.echo("", err=True)
    if result.problem is not None:
        verified = "1 row" if result.rows == 1 else f"{result.rows:,} rows"
        raise click.ClickException(
            f"{result.problem.message}. The {verified} before it verified."
        )
    click.echo(f"{result.rows:,} rows verified.")
    if result.last_id is not None:
        click.echo(f"Last row: id {result.last_id}, hash {result.last_hash}")


@main.group()
def db() -> None:
    """Set up the database roles (run as the role that owns the tables)."""


@db.command(name="grant-app-role")
@click.argument("role")
@click.option(
    "--password-env",
    default=None,
    metavar="VARIABLE",
    help="Environment variable with the role's password (default: leave it as is).",
)
def grant_app_role_command(role: str, password_env: str | None) -> None:
    """Create ROLE if missing and grant it what the web and worker need.

    ROLE may read and write every table, but only SELECT and INSERT on
    audit_log, and owns nothing, so it cannot disable the audit triggers.
    Run it as the owner (DATABASE_URL) after the migrations; it also grants
    ROLE its rights on the tables that later migrations create.
    """
    prepare()
    from app.audit.roles import RoleError, grant_app_role

    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise click.ClickException(
                f"--password-env names {password_env}, which is unset or empty"
            )

    async def run() -> list[str]:
        connection = await asyncpg.connect(os.environ["DATABASE_URL"])
        try:
            return await grant_app_role(connection, role, password)
        finally:
            await connection.close()

    try:
        statements = asyncio.run(run())
    except RoleError as error:
        raise click.ClickException(str(error)) from None
    except (OSError, asyncpg.PostgresError) as error:
        raise click.ClickException(
            f"granting role {role!r} at DATABASE_URL failed: {error}"
        ) from None
    for statement in statements:
        click.echo(statement + ";")
    click.echo(f"Role {role!r} may now run the web and worker processes.")


if __name__ == "__main__":
    main()
