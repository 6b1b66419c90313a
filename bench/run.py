"""The whole run: set up, measure, report, and remove what it created.

Everything the run creates is undone when it ends, also on failure, Ctrl-C or
SIGTERM: the web and client processes, the database and the Redis keys. Only
the server logs stay behind when a run fails or finds problems.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench import database, live, report, servers, storm
from bench.baselines import redis_round_trips
from bench.changes import MovePlanner
from bench.context import Context
from bench.machine import describe_machine, git_commit, load_average
from bench.pages import measure_pages
from bench.progress import Steps, say
from bench.queries import count_queries
from bench.session import Session
from bench.settings import Settings
from bench.stats import Summary

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAVEN_FOLDER = "crm_sales_opportunities"
TICKETS_FILE = Path("support_tickets") / "customer_support_tickets.csv"
STEPS = 14


def redis_url() -> str:
    return os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)


def datasets_dir() -> Path:
    return Path(os.environ.get("CRM_DATASETS", ROOT.parent / "shared" / "datasets"))


def find_datasets() -> tuple[Path, Path | None]:
    """Return the Maven folder and the tickets file, or None for missing tickets."""
    maven_folder = datasets_dir() / MAVEN_FOLDER
    if not maven_folder.is_dir():
        raise SystemExit(
            f"The Maven dataset folder {maven_folder} was not found. Set CRM_DATASETS "
            f"to the folder that contains {MAVEN_FOLDER}/."
        )
    tickets_file = datasets_dir() / TICKETS_FILE
    if not tickets_file.is_file():
        say(f"{tickets_file} not found, so the ticket board is not measured")
        return maven_folder, None
    return maven_folder, tickets_file


async def delete_keys(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def main(
    settings: Settings, maven_folder: Path, tickets_file: Path | None, log_dir: Path
) -> tuple[Path, list[str]]:
    """Run every measurement; return the results file and the run's problems."""
    started_at = dt.datetime.now(dt.UTC)
    load_before = load_average()
    run_id = secrets.token_hex(5)
    name = f"crm_bench_{run_id}"
    admin_url = admin_database_url()
    server_env = {
        "DATABASE_URL": database.database_url(name),
        "REDIS_URL": redis_url(),
        "REDIS_PREFIX": f"crm-bench-{run_id}:",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "CRM_DATA_DIR": str(log_dir / "data"),
    }
    # The application reads these once, when its modules are first imported.
    os.environ.update(server_env)

    steps = Steps(STEPS)
    async with contextlib.AsyncExitStack() as stack:
        try:
            steps.step(f"creating database {name} and migrating")
            await database.create_database(name, admin_url)
            stack.push_async_callback(database.drop_database, name, admin_url)
            stack.push_async_callback(
                delete_keys, server_env["REDIS_URL"], server_env["REDIS_PREFIX"]
            )
            await database.migrate()
            context = await prepare(
                settings, steps, stack, log_dir, server_env, maven_folder, tickets_file
            )
            figures = await measure_all(context, steps)

            steps.step("writing the results")
            result = {
                "started_at": started_at.isoformat(timespec="seconds"),
                "duration_s": round(
                    (dt.datetime.now(dt.UTC) - started_at).total_seconds(), 1
                ),
                "command": "python -m bench" + (" --quick" if settings.quick else ""),
                "machine": await describe_machine(
                    server_env["DATABASE_URL"], server_env["REDIS_URL"]
                ),
                "load_average_1m": {"before": load_before, "after": load_average()},
                "git": git_commit(ROOT),
                "settings": settings.to_json(),
                **figures,
                "server_logs": {
                    server_name: servers.log_errors(server)
                    for server_name, server in context.servers.items()
                },
            }
            result["problems"] = report.problems(result)
            path = report.write(ROOT / "bench" / "results", result, started_at)
        finally:
            say("stopping servers and dropping the database")
    return path, result["problems"]


async def prepare(
    settings: Settings,
    steps: Steps,
    stack: contextlib.AsyncExitStack,
    log_dir: Path,
    server_env: dict[str, str],
    maven_folder: Path,
    tickets_file: Path | None,
) -> Context:
    """Import the data, create the user and pipelines, start the web servers."""
    from app.db import start_pool
    from app.imports.maven import PIPELINE
    from app.piccolo_conf import DB

    await start_pool(DB, min_size=1, max_size=4)
    stack.push_async_callback(DB.close_connection_pool)

    steps.step(
        f"importing {maven_folder}" + (f" and {tickets_file}" if tickets_file else "")
    )
    await database.import_dataset("maven", maven_folder)
    if tickets_file is not None:
        await database.import_dataset("tickets", tickets_file)

    steps.step("creating the bench user and the small pipelines")
    email, password = await database.create_bench_user()
    maven = await database.find_pipeline(PIPELINE)
    small = await database.create_small_pipelines(
        settings.heavy_pipelines, settings.small_pipeline_deals
    )
    context = Context(
        settings=settings,
        stack=stack,
        log_dir=log_dir,
        server_env=server_env,
        email=email,
        password=password,
        maven=maven,
        small=small,
        has_tickets=tickets_file is not None,
        maven_moves=MovePlanner([maven]),
        small_moves=MovePlanner(small),
    )

    names = ["writer"] + [f"web-{n}" for n in range(1, settings.heavy_servers + 1)]
    steps.step(f"starting {len(names)} web servers")
    await context.start_servers(names)
    context.writer = Session(context.servers["writer"].url)
    stack.push_async_callback(context.writer.close)
    await context.writer.sign_in(email, password)
    return context


async def measure_all(context: Context, steps: Steps) -> dict[str, Any]:
    settings = context.settings

    steps.step("baseline: Redis PUBLISH to receipt")
    redis = Summary.of(
        await redis_round_trips(
            context.redis_url,
            f"{context.redis_prefix}bench-baseline",
            settings.redis_warmup,
            settings.redis_round_trips,
        ),
        "ms",
    )

    steps.step(
        f"board pages, {settings.page_rounds} rounds after {settings.page_warmup}"
    )
    pages = await measure_pages(context)

    steps.step(
        f"live board: {settings.board_sockets} sockets, {settings.board_changes} moves"
    )
    board = await live.board_fanout(context)

    steps.step("baseline: minimal fan-out in the live board's shape")
    topics = [context.maven.topic]
    frame_size = board["frame_size_median_chars"]
    board_minimal = await live.minimal_fanout(context, board, topics, frame_size)
    board_minimal_plain = await live.minimal_fanout(
        context, board, topics, frame_size, compression=False
    )

    steps.step(
        f"heavy fan-out: {settings.heavy_sockets} sockets on "
        f"{settings.heavy_pipelines} boards, {settings.heavy_changes} moves, then "
        f"{settings.ceiling_changes} at {settings.ceiling_rate:g}/s"
    )
    heavy, ceiling = await live.heavy_fanout(context)
    # Their pools hold PostgreSQL connections that the counted server needs.
    for number in range(1, settings.heavy_servers + 1):
        await servers.stop(context.servers[f"web-{number}"])

    steps.step("baseline: minimal fan-out in the heavy shape")
    heavy_minimal = await live.minimal_fanout(
        context,
        heavy,
        [pipeline.topic for pipeline in context.small],
        heavy["frame_size_median_chars"],
    )

    steps.step("queries per page, event and move, counted on the wire")
    queries = await count_queries(context)

    steps.step(
        f"baseline: reconnect storm of {settings.storm_sockets} pages on the "
        "minimal app"
    )
    reconnect_minimal = await storm.reconnect_storm(context, minimal=True)

    steps.step(
        f"reconnect storm: {settings.storm_sockets} pages on one web process, "
        "killed and restarted"
    )
    reconnect = await storm.reconnect_storm(context)

    return report.measurements(
        dataset={
            "maven_pipeline_deals": len(context.maven.deals),
            "maven_pipeline_stages": len(context.maven.stages),
            "tickets_imported": context.has_tickets,
        },
        redis=redis,
        pages=pages,
        board=board,
        board_minimal=board_minimal,
        board_minimal_plain=board_minimal_plain,
        heavy=heavy,
        ceiling=ceiling,
        heavy_minimal=heavy_minimal,
        queries=queries,
        storm=reconnect,
        storm_minimal=reconnect_minimal,
    )


async def check_services(admin_url: str, redis_url: str) -> None:
    """Exit with a message naming the server if PostgreSQL or Redis is unreachable."""
    try:
        connection = await asyncpg.connect(admin_url, timeout=10)
        await connection.close()
    except (OSError, asyncpg.PostgresError) as error:
        where = urlsplit(admin_url)
        raise SystemExit(
            f"Connecting to PostgreSQL at {where.hostname}:{where.port or 5432} "
            f"failed ({error}). Start it or set DATABASE_URL."
        ) from None

    redis = Redis.from_url(redis_url)
    try:
        await redis.ping()
    except (OSError, RedisError) as error:
        raise SystemExit(
            f"Connecting to Redis failed ({error}). Start it or set REDIS_URL."
        ) from None
    finally:
        await redis.aclose()


def admin_database_url() -> str:
    """Return the URL of the database that CREATE DATABASE is sent to."""
    server_url = database.server_url()
    return database.database_url(urlsplit(server_url).path.lstrip("/") or "postgres")


def run(settings: Settings) -> Path:
    """Run ``main`` so that SIGTERM cleans up as Ctrl-C does."""
    maven_folder, tickets_file = find_datasets()
    asyncio.run(check_services(admin_database_url(), redis_url()))
    log_dir = Path(tempfile.mkdtemp(prefix="crm-bench-"))

    async def guarded() -> tuple[Path, list[str]]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main(settings, maven_folder, tickets_file, log_dir)

    try:
        path, found = asyncio.run(guarded())
    except KeyboardInterrupt:
        say(f"the run was interrupted; server logs are kept in {log_dir}")
        raise SystemExit(130) from None
    except asyncio.CancelledError:
        say(f"the run was stopped by SIGTERM; server logs are kept in {log_dir}")
        raise SystemExit(143) from None
    except BaseException:
        say(f"the run failed; server logs are kept in {log_dir}")
        raise
    if found:
        say(f"the run found problems; server logs are kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return path
