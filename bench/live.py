"""The live fan-out scenarios: one big board, many small boards, the minimal app.

Moves are POSTed to the "writer" web process, which has no sockets open, so
the CPU used by the processes with the sockets is fan-out work only.
"""

from __future__ import annotations

import secrets
from typing import Any

from redis.asyncio import Redis

from bench import servers
from bench.changes import MovePlanner, post_moves, publish_frames
from bench.context import Context, warm_up
from bench.fanout import measure
from bench.fleet import Fleet


def describe(fleet: Fleet, rate: float, web_processes: int) -> dict[str, Any]:
    return {
        "sockets": len(fleet.specs),
        "topics": len(fleet.per_topic),
        "web_processes": web_processes,
        "client_processes": len(fleet.processes),
        "websocket_extensions": fleet.extensions,
        "offered_rate_per_s": rate,
    }


async def measure_moves(
    context: Context,
    fleet: Fleet,
    planner: MovePlanner,
    count: int,
    rate: float,
    socket_servers: list[str],
) -> dict[str, Any]:
    writer = context.session()
    moves = planner.take(count)
    processes = {name: context.pid(name) for name in [*socket_servers, "writer"]}
    run = await measure(
        fleet,
        lambda: post_moves(writer, moves, rate),
        processes,
        socket_servers=socket_servers,
        writer="writer",
    )
    return {**describe(fleet, rate, len(socket_servers)), **run.summary()}


async def board_fanout(context: Context) -> dict[str, Any]:
    """Many sockets on the imported board, all on one web process."""
    settings = context.settings
    fleet = await context.start_fleet(
        [context.servers["web-1"]],
        [context.maven.topic],
        settings.board_sockets,
        settings.board_client_processes,
    )
    planner = context.maven_moves
    writer = context.session()
    await warm_up(
        fleet,
        lambda: post_moves(
            writer, planner.take(settings.warmup_changes), settings.board_rate
        ),
    )
    result = await measure_moves(
        context, fleet, planner, settings.board_changes, settings.board_rate, ["web-1"]
    )
    await fleet.stop()
    return result


async def heavy_fanout(context: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sockets on many small boards over several web processes, at two rates.

    The second, higher rate is meant to find where deliveries stop keeping
    up with the moves, so its latency shows a queue and not the fan-out.
    """
    settings = context.settings
    names = [f"web-{number}" for number in range(1, settings.heavy_servers + 1)]
    fleet = await context.start_fleet(
        [context.servers[name] for name in names],
        [pipeline.topic for pipeline in context.small],
        settings.heavy_sockets_per_pipeline,
        settings.heavy_client_processes,
    )
    planner = context.small_moves
    writer = context.session()
    await warm_up(
        fleet,
        lambda: post_moves(
            writer, planner.take(len(context.small)), settings.heavy_rate
        ),
    )
    steady = await measure_moves(
        context, fleet, planner, settings.heavy_changes, settings.heavy_rate, names
    )
    ceiling = await measure_moves(
        context,
        fleet,
        planner,
        settings.ceiling_changes,
        settings.ceiling_rate,
        names,
    )
    await fleet.stop()
    return steady, ceiling


async def minimal_fanout(
    context: Context,
    shape: dict[str, Any],
    topics: list[str],
    frame_size: int,
    compression: bool = True,
) -> dict[str, Any]:
    """Repeat a measured shape on the minimal app, fed by raw Redis publishes.

    ``shape`` is a result of ``measure_moves``: its sockets per topic, web and
    client processes, rate and number of changes are used again, and the
    frames are ``frame_size`` characters long like the real ones.
    """
    prefix = f"{context.redis_prefix}minimal-{secrets.token_hex(3)}:"
    context.server_env["BENCH_CHANNEL_PREFIX"] = prefix
    names = [
        f"minimal-{len(context.servers) + number}"
        for number in range(shape["web_processes"])
    ]
    started = await context.start_servers(names, minimal=True)
    fleet = await context.start_fleet(
        started,
        topics,
        shape["sockets"] // len(topics),
        shape["client_processes"],
        compression=compression,
    )
    redis = Redis.from_url(context.redis_url)
    context.stack.push_async_callback(redis.aclose)
    rate = shape["offered_rate_per_s"]

    warmup = [(number, topics[number % len(topics)]) for number in range(1, 11)]
    await warm_up(
        fleet, lambda: publish_frames(redis, prefix, warmup, frame_size, rate)
    )
    targets = [
        (number, topics[number % len(topics)])
        for number in range(100, 100 + shape["changes_sent"])
    ]
    run = await measure(
        fleet,
        lambda: publish_frames(redis, prefix, targets, frame_size, rate),
        {server.name: server.pid for server in started},
        socket_servers=names,
    )
    await fleet.stop()
    for server in started:
        await servers.stop(server)
    return {**describe(fleet, rate, len(started)), **run.summary()}
