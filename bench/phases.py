"""Each measurement of the run, given the servers and data that the run set up."""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import servers
from bench.baselines import redis_round_trips
from bench.changes import Change, MovePlanner, post_moves, publish_frames
from bench.database import PipelineDeals, database_url
from bench.fanout import measure, wait_for_deliveries
from bench.fleet import Fleet, socket_specs
from bench.pages import Page, load_more_path, time_pages
from bench.pgproxy import CountingProxy
from bench.progress import say
from bench.queries import QueryWindow
from bench.servers import Server
from bench.session import Session
from bench.settings import Settings
from bench.stats import Summary


@dataclass
class Context:
    """What every measurement needs: settings, data, servers and a writer."""

    settings: Settings
    stack: contextlib.AsyncExitStack
    log_dir: Path
    server_env: dict[str, str]
    redis_url: str
    redis_prefix: str
    email: str
    password: str
    maven: PipelineDeals
    small: list[PipelineDeals]
    has_tickets: bool
    servers: dict[str, Server] = field(default_factory=dict)
    writer: Session | None = None
    maven_moves: MovePlanner | None = None
    small_moves: MovePlanner | None = None

    def session(self) -> Session:
        if self.writer is None:
            raise RuntimeError("the writer session is not signed in yet")
        return self.writer

    @property
    def socket_headers(self) -> dict[str, str]:
        return {"Cookie": self.session().cookie_header()}

    def pid(self, name: str) -> int:
        return self.servers[name].pid


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://")


async def start_servers(
    context: Context, names: list[str], minimal: bool = False
) -> list[Server]:
    """Start servers in parallel; each is stopped when the run ends."""
    started = []
    for name in names:
        if minimal:
            server = servers.start_minimal(name, context.server_env, context.log_dir)
        else:
            server = servers.start_app(name, context.server_env, context.log_dir)
        context.stack.callback(servers.stop, server)
        context.servers[name] = server
        started.append(server)
    for server in started:
        await servers.wait_until_healthy(server)
    return started


async def start_fleet(
    context: Context,
    ws_urls: list[str],
    topics: list[str],
    per_topic: int,
    processes: int,
) -> Fleet:
    fleet = Fleet(
        socket_specs(ws_urls, topics, per_topic), context.socket_headers, processes
    )
    context.stack.callback(fleet.terminate)
    await fleet.start()
    return fleet


async def warm_up(fleet: Fleet, send: Callable[[], Awaitable[list[Change]]]) -> None:
    """Send a few changes and wait for them, so first-use costs fall outside."""
    changes = await send()
    await wait_for_deliveries(fleet, sum(fleet.sockets_on(c.topic) for c in changes))


async def redis_baseline(context: Context) -> Summary:
    settings = context.settings
    samples = await redis_round_trips(
        context.redis_url,
        f"{context.redis_prefix}bench-baseline",
        settings.redis_warmup,
        settings.redis_round_trips,
    )
    return Summary.of(samples, "ms")


async def board_pages(context: Context) -> dict[str, Page]:
    settings = context.settings
    session = Session(context.servers["web-1"].url)
    context.stack.push_async_callback(session.close)
    await session.sign_in(context.email, context.password)

    board = f"/pipelines/{context.maven.id}"
    pages = [
        Page("health", "/health"),
        Page("board", board),
        Page("column_load_more", await load_more_path(session, board), htmx=True),
    ]
    if context.has_tickets:
        pages.append(Page("ticket_board", "/tickets"))
    await time_pages(session, pages, settings.page_warmup, settings.page_rounds)
    return {page.name: page for page in pages}


async def board_fanout(context: Context) -> dict[str, Any]:
    """Many sockets on the imported board of one web process; moves via another."""
    settings = context.settings
    planner = context.maven_moves
    assert planner is not None
    writer = context.session()
    topic = context.maven.topic
    fleet = await start_fleet(
        context,
        [ws_url(context.servers["web-1"])],
        [topic],
        settings.board_sockets,
        settings.board_client_processes,
    )
    await warm_up(
        fleet,
        lambda: post_moves(
            writer, planner.take(settings.warmup_changes), settings.board_rate
        ),
    )
    moves = planner.take(settings.board_changes)
    run = await measure(
        fleet,
        lambda: post_moves(writer, moves, settings.board_rate),
        {"web-1": context.pid("web-1"), "writer": context.pid("writer")},
        socket_servers=["web-1"],
        writer="writer",
    )
    return {
        "sockets": len(fleet.specs),
        "client_processes": len(fleet.processes),
        "websocket_extensions": fleet.extensions,
        "offered_rate_per_s": settings.board_rate,
        **run.summary(),
    }


async def heavy_fanout(context: Context) -> dict[str, Any]:
    """Sockets on many small boards, spread over several web processes."""
    settings = context.settings
    planner = context.small_moves
    assert planner is not None
    writer = context.session()
    names = [f"web-{number}" for number in range(1, settings.heavy_servers + 1)]
    fleet = await start_fleet(
        context,
        [ws_url(context.servers[name]) for name in names],
        [pipeline.topic for pipeline in context.small],
        settings.heavy_sockets_per_pipeline,
        settings.heavy_client_processes,
    )
    await warm_up(
        fleet,
        lambda: post_moves(
            writer, planner.take(len(context.small)), settings.heavy_rate
        ),
    )
    moves = planner.take(settings.heavy_changes)
    run = await measure(
        fleet,
        lambda: post_moves(writer, moves, settings.heavy_rate),
        {
            **{name: context.pid(name) for name in names},
            "writer": context.pid("writer"),
        },
        socket_servers=names,
        writer="writer",
    )
    return {
        "sockets": len(fleet.specs),
        "pipelines": len(context.small),
        "web_processes": len(names),
        "client_processes": len(fleet.processes),
        "offered_rate_per_s": settings.heavy_rate,
        **run.summary(),
    }


async def minimal_fanout(
    context: Context,
    topics: list[str],
    per_topic: int,
    server_count: int,
    client_processes: int,
    changes: int,
    rate: float,
    frame_size: int,
) -> dict[str, Any]:
    """The same sockets and rate on the minimal fan-out app, fed by raw publishes."""
    prefix = f"{context.redis_prefix}minimal-{secrets.token_hex(3)}:"
    context.server_env["BENCH_CHANNEL_PREFIX"] = prefix
    names = [
        f"minimal-{len(context.servers)}-{number}" for number in range(server_count)
    ]
    started = await start_servers(context, names, minimal=True)
    fleet = await start_fleet(
        context,
        [ws_url(server) for server in started],
        topics,
        per_topic,
        client_processes,
    )
    redis = Redis.from_url(context.redis_url)
    context.stack.push_async_callback(redis.aclose)

    warmup_targets = [(number, topics[number % len(topics)]) for number in range(1, 11)]
    await warm_up(
        fleet, lambda: publish_frames(redis, prefix, warmup_targets, frame_size, rate)
    )
    targets = [
        (number, topics[number % len(topics)]) for number in range(100, 100 + changes)
    ]
    run = await measure(
        fleet,
        lambda: publish_frames(redis, prefix, targets, frame_size, rate),
        {server.name: server.pid for server in started},
        socket_servers=[server.name for server in started],
    )
    for server in started:
        servers.stop(server)
    return {
        "sockets": len(fleet.specs),
        "web_processes": len(started),
        "client_processes": len(fleet.processes),
        "offered_rate_per_s": rate,
        **run.summary(),
    }


def proxied_url(database_name: str, port: int) -> str:
    """Return the bench database's URL through the proxy on ``port``."""
    direct = database_url(database_name)
    scheme, rest = direct.split("://", 1)
    credentials, _, location = rest.rpartition("@")
    path = location.split("/", 1)[1]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    separator = "&" if "?" in path else "?"
    return f"{scheme}://{netloc}/{path}{separator}sslmode=disable"


async def query_counts(
    context: Context, database_name: str, upstream: tuple[str, int]
) -> dict[str, Any]:
    """Count the queries of a web process behind the proxy: pages, events, moves."""
    settings = context.settings
    proxy = CountingProxy(*upstream)
    await proxy.start()
    context.stack.push_async_callback(proxy.close)

    context.server_env["DATABASE_URL"] = proxied_url(database_name, proxy.port)
    try:
        (server,) = await start_servers(context, ["counted"])
    finally:
        context.server_env["DATABASE_URL"] = database_url(database_name)
    session = Session(server.url)
    context.stack.push_async_callback(session.close)
    await session.sign_in(context.email, context.password)
    board = f"/pipelines/{context.maven.id}"

    for _ in range(3):
        await session.http.get(board)
    pages = QueryWindow(proxy)
    pages.start()
    for _ in range(settings.query_pages):
        await session.http.get(board)
    pages.stop()

    planner = context.maven_moves
    assert planner is not None
    writer = context.session()
    fleet = await start_fleet(
        context, [ws_url(server)], [context.maven.topic], settings.query_sockets, 1
    )
    await warm_up(fleet, lambda: post_moves(writer, planner.take(5), 10))
    events = QueryWindow(proxy)
    events.start()
    moves = planner.take(settings.query_events)
    changes = await post_moves(writer, moves, 10)
    await wait_for_deliveries(fleet, len(changes) * settings.query_sockets)
    events.stop()
    sockets = await fleet.collect()
    delivered = sum(len(socket["frames"]) for socket in sockets)

    moves_window = QueryWindow(proxy)
    await post_moves(session, planner.take(3), 10)
    moves_window.start()
    posted = await post_moves(session, planner.take(settings.query_moves), 10)
    moves_window.stop()
    servers.stop(server)

    say(f"queries counted on {proxy.port}: {sum(proxy.statements.values())} statements")
    return {
        "method": "wire-protocol proxy between the web process and PostgreSQL",
        "board_page": pages.per(settings.query_pages, "page"),
        "live_event": {
            **events.per(len(changes), "event"),
            "sockets": settings.query_sockets,
            "deliveries": delivered,
        },
        "move_post": {
            **moves_window.per(len(posted), "move"),
            "rejected": sum(change.status != 204 for change in posted),
        },
    }


def deals_needed(settings: Settings) -> int:
    """Deals each small pipeline needs so that no deal is moved twice."""
    per_pipeline = (
        settings.heavy_changes + settings.heavy_pipelines
    ) / settings.heavy_pipelines
    return math.ceil(per_pipeline) + 2
