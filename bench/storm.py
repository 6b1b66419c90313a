"""The reconnect storm: one web process with many pages is killed and restarted.

Every page's socket is on one ``crm serve`` process, ``storm``. The run moves
a deal on each stream so that every page has a recent position, then kills
the process with SIGKILL and POSTs moves to "writer" while it is down. It
starts the process again on the same port and measures how long the pages
take to reconnect and catch up. A page has caught up when a connection it
opened after the kill has brought every one of its streams, without a gap,
to the ``last_seq`` that the database holds after the moves (or a
``#snap`` frame at or above it). Pages reconnect after the page's own
jittered delay, so the time includes that wait (see ``bench.storm_clients``).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import signal
import socket
import time
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.cli import LISTEN_BACKLOG
from bench import processes, servers, storm_clients, storm_figures
from bench.changes import Change, Move, post_moves
from bench.context import Context
from bench.cpu import CpuWindow
from bench.fleet import receive
from bench.progress import say
from bench.servers import Server
from bench.stats import Target
from bench.storm_clients import PageSpec

CATCH_UP_TARGET = Target("max", 5.0, "s")
# Open files a web process needs besides its sockets: its listening socket,
# database and Redis connections, logs and Python's own files.
SERVER_SPARE_FILES = 200
CONNECT_TIMEOUT = 300.0
POSITIONS_TIMEOUT = 60.0
START_TIMEOUT = 30.0
POLL_SECONDS = 0.1
SAMPLE_SECONDS = 1.0
HEALTH_POLL_SECONDS = 0.01
# Pages per client process at most, far below a process's open-file limit.
MAX_PAGES_PER_PROCESS = 2500
# The lowest port that the storm server's port is drawn from.
LOWEST_PORT = 10000


def storm_port() -> int:
    """Return a free loopback port below the ephemeral range.

    While no server listens, a client connecting to a port inside
    ``ip_local_port_range`` can be given that same port as its own and
    connect to itself (a TCP simultaneous open). It then keeps the port bound,
    and the restarted server cannot bind it.
    """
    lowest_ephemeral = processes.read_number("/proc/sys/net/ipv4/ip_local_port_range")
    candidates = list(range(LOWEST_PORT, lowest_ephemeral))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(
        f"no free port found between {LOWEST_PORT} and {lowest_ephemeral - 1}"
    )


class PageFleet:
    """Client processes, each holding a share of the pages."""

    def __init__(
        self, specs: list[PageSpec], headers: dict[str, str], processes: int
    ) -> None:
        self.specs = specs
        self.headers = headers
        self.shares = [specs[index::processes] for index in range(processes)]
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for share in self.shares:
            parent, child = context.Pipe()
            process = context.Process(
                target=storm_clients.run,
                args=(share, self.headers, child),
                daemon=True,
            )
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)
        for reply in await self.gather(START_TIMEOUT):
            if reply[0] != "started":
                raise RuntimeError(f"a client process failed to start: {reply[1]}")

    async def gather(self, seconds: float) -> list[tuple[Any, ...]]:
        return list(
            await asyncio.gather(*(receive(pipe, seconds) for pipe in self.pipes))
        )

    async def ask(self, command: Any, seconds: float = 60.0) -> list[tuple[Any, ...]]:
        for pipe in self.pipes:
            pipe.send(command)
        return await self.gather(seconds)

    async def status(self) -> dict[str, int]:
        """Count the pages that are open, ready, at their targets and caught up."""
        replies = await self.ask("status")
        names = ("open", "ready", "at_targets", "caught_up")
        return {
            name: sum(reply[index + 1] for reply in replies)
            for index, name in enumerate(names)
        }

    async def wait_for(self, name: str, seconds: float) -> dict[str, int]:
        """Poll until every page counts as ``name`` or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        while True:
            counts = await self.status()
            if counts[name] >= len(self.specs) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(POLL_SECONDS)

    async def results(self) -> list[dict[str, Any]]:
        replies = await self.ask("results", seconds=120.0)
        return [page for reply in replies for page in reply[1]]

    async def stop(self) -> None:
        await self.ask("stop")
        for process in self.processes:
            await asyncio.to_thread(process.join, 30)

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)


class ServerSampler:
    """The maximum open files and Redis and PostgreSQL connections of a process."""

    def __init__(self, pid: int, ports: dict[str, int]) -> None:
        self.pid = pid
        self.ports = ports
        self.open_files = 0
        self.connections: dict[str, int] = dict.fromkeys(ports, 0)

    def sample(self) -> None:
        self.open_files = max(self.open_files, processes.open_files(self.pid))
        for name, count in processes.connections_to(self.pid, self.ports).items():
            self.connections[name] = max(self.connections[name], count)

    def to_json(self) -> dict[str, Any]:
        return {
            "server_open_files_max": self.open_files,
            "server_connections_max": self.connections,
        }


def page_specs(
    ws_url: str, counts: dict[str, int], positions: dict[str, int]
) -> list[PageSpec]:
    """Make ``counts[topic]`` pages per topic, holding ``positions`` as rendered."""
    return [
        PageSpec(
            url=f"{ws_url}/live?resume=1&topic={topic}",
            topics=(topic,),
            positions={topic: positions[topic]},
        )
        for topic, count in counts.items()
        for _ in range(count)
    ]


def sockets_per_topic(context: Context, sockets: int) -> dict[str, int]:
    """Spread ``sockets`` over the Maven board and the small pipelines.

    The Maven board keeps its share of the settings, and the rest is spread
    evenly over the small pipelines, so a capped storm keeps the same mix.
    """
    settings = context.settings
    board_share = settings.storm_board_sockets / settings.storm_sockets
    board = round(sockets * board_share)
    small = [pipeline.topic for pipeline in context.small]
    each, extra = divmod(sockets - board, len(small))
    counts = {context.maven.topic: board}
    for index, topic in enumerate(small):
        counts[topic] = each + (index < extra)
    return counts


def socket_limit(requested: int, server_limit: int | None) -> tuple[int, str | None]:
    """Return how many sockets the server can hold, and why, if fewer."""
    if server_limit is None or requested + SERVER_SPARE_FILES <= server_limit:
        return requested, None
    sockets = server_limit - SERVER_SPARE_FILES
    reason = (
        f"the web process's open-file limit of {server_limit} leaves room for "
        f"{sockets} sockets"
    )
    return sockets, reason


def moves_per_stream(context: Context, rounds: int) -> list[Move]:
    """Take ``rounds`` moves on every stream, the streams interleaved."""
    moves: list[Move] = []
    for _ in range(rounds):
        moves += context.maven_moves.take(1)
        moves += context.small_moves.take(len(context.small))
    return moves


async def send_moves(context: Context, moves: list[Move]) -> list[Change]:
    changes = await post_moves(
        context.session(), moves, context.settings.storm_change_rate
    )
    rejected = [change for change in changes if change.status != 204]
    if rejected:
        statuses = Counter(change.status for change in rejected)
        raise RuntimeError(
            f"{len(rejected)} of {len(changes)} storm moves were rejected, "
            f"statuses {dict(statuses)}; the writer's log shows why"
        )
    return changes


async def stream_positions(topics: list[str]) -> dict[str, int]:
    from app.events.service import stream_positions as read_positions

    return await read_positions(topics)


async def wait_for_health(server: Server, seconds: float = START_TIMEOUT) -> int:
    """Return the monotonic ns just before the first /health request that got 200.

    uvicorn binds the port only after the application's startup, so that
    moment is at most one poll interval after sockets could connect.
    """
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server {server.name} exited with code "
                    f"{server.process.returncode} before it was ready; "
                    f"its log ends with:\n{server.log_tail()}"
                )
            sent = time.monotonic_ns()
            try:
                response = await client.get(f"{server.url}/health")
                if response.status_code == 200:
                    return sent
            except httpx.HTTPError:
                pass
            await asyncio.sleep(HEALTH_POLL_SECONDS)
    raise TimeoutError(
        f"server {server.name} at {server.url} was not ready within {seconds} s; "
        f"its log ends with:\n{server.log_tail()}"
    )


def start_server(
    context: Context, name: str, port: int, minimal: bool = False
) -> Server:
    if minimal:
        server = servers.start_minimal(
            name,
            {**context.server_env, "BENCH_CHANNEL_PREFIX": f"{context.redis_prefix}m:"},
            context.log_dir,
            port,
            deflate=False,
        )
    else:
        server = servers.start_app(name, context.server_env, context.log_dir, port)
    context.stack.push_async_callback(servers.stop, server)
    context.servers[name] = server
    return server


async def kill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(server.process.wait)


def service_ports(context: Context) -> dict[str, int]:
    database = urlsplit(context.server_env["DATABASE_URL"])
    redis = urlsplit(context.redis_url)
    return {"postgresql": database.port or 5432, "redis": redis.port or 6379}


def database_name(context: Context) -> str:
    return urlsplit(context.server_env["DATABASE_URL"]).path.lstrip("/")


async def connect_pages(
    context: Context, server: Server, sockets: int
) -> tuple[PageFleet, dict[str, int], dict[str, Any]]:
    """Open the pages on ``server`` and wait until each has resumed."""
    counts = sockets_per_topic(context, sockets)
    # A page reads its positions before its data; these pages have no data.
    positions = await stream_positions(list(counts))
    client_processes = max(
        context.settings.storm_client_processes,
        math.ceil(sockets / MAX_PAGES_PER_PROCESS),
    )
    fleet = PageFleet(
        page_specs(server.url.replace("http://", "ws://"), counts, positions),
        {"Cookie": context.session().cookie_header()},
        client_processes,
    )
    context.stack.callback(fleet.terminate)

    say(f"  connecting {sockets} pages from {len(fleet.shares)} client processes")
    window = CpuWindow({"server": server.pid})
    window.start()
    await fleet.start()
    connected = await fleet.wait_for("ready", CONNECT_TIMEOUT)
    window.stop()
    if connected["ready"] < sockets:
        raise RuntimeError(
            f"only {connected['ready']} of {sockets} pages connected and resumed "
            f"within {CONNECT_TIMEOUT:g} s; the storm server's log ends with:\n"
            f"{server.log_tail()}"
        )

    first_connect = {
        "seconds": round(window.seconds, 2),
        "connects_per_s": round(sockets / window.seconds, 1),
        "server_cpu_s": round(window.used("server"), 3),
        "server_cpu_ms_per_connect": round(window.used("server") / sockets * 1e3, 3),
        "machine_cpu_busy": round(window.machine_busy, 3),
    }
    return fleet, counts, first_connect


async def wait_for_catch_up(
    fleet: PageFleet, sampler: ServerSampler, seconds: float
) -> dict[str, int]:
    """Poll the pages until all caught up or ``seconds`` passed, sampling the server."""
    deadline = time.monotonic() + seconds
    next_sample = 0.0
    while True:
        now = time.monotonic()
        if now >= next_sample:
            await asyncio.to_thread(sampler.sample)
            next_sample = now + SAMPLE_SECONDS
        counts = await fleet.status()
        if counts["caught_up"] >= len(fleet.specs) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(POLL_SECONDS)


async def hold_recent_positions(
    context: Context,
    fleet: PageFleet,
    server: Server,
    topics: list[str],
    minimal: bool = False,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Move a deal on every stream and wait until each page has applied it."""
    settings = context.settings
    rounds = 0 if minimal else settings.storm_warmup_changes_per_stream
    warmup = await send_moves(context, moves_per_stream(context, rounds))
    positions = await stream_positions(topics)
    await fleet.ask(("targets", positions))
    held = await fleet.wait_for("at_targets", POSITIONS_TIMEOUT)
    if held["at_targets"] < len(fleet.specs):
        raise RuntimeError(
            f"only {held['at_targets']} of {len(fleet.specs)} pages received the "
            f"{len(warmup)} moves made before the kill"
        )
    return positions, {
        "changes": len(warmup),
        "clients_connected": held["open"],
        "clients_at_positions": held["at_targets"],
        "server_open_files": processes.open_files(server.pid),
        "server_rss_mib": processes.resident_mib(server.pid),
    }


async def kill_and_change(
    context: Context,
    fleet: PageFleet,
    server: Server,
    topics: list[str],
    minimal: bool = False,
) -> tuple[int, dict[str, int], dict[str, Any]]:
    """SIGKILL ``server``, then move deals through "writer" while it is down.

    Returns the kill's monotonic ns, the streams' positions after the moves
    and what the pages counted before the kill.
    """
    say(f"  killing {server.name} (pid {server.pid}) with SIGKILL")
    killed_ns = time.monotonic_ns()
    marks = await fleet.ask(("mark", killed_ns))
    await kill(server)

    rounds = 0 if minimal else context.settings.storm_changes_per_stream
    moves = moves_per_stream(context, rounds)
    if moves:
        say(f"  {len(moves)} moves to writer while {server.name} is down")
        await send_moves(context, moves)
    targets = await stream_positions(topics)
    await fleet.ask(("targets", targets))
    return killed_ns, targets, sum_counts([reply[1] for reply in marks])


async def restart_and_wait(
    context: Context, fleet: PageFleet, port: int, minimal: bool = False
) -> dict[str, Any]:
    """Start the server again on ``port`` and wait for the pages to catch up.

    Returns the monotonic ns of the restart, of readiness and of the end of
    the wait, the pages' records, and what was measured of the server.
    """
    name = "storm-minimal-restarted" if minimal else "storm-restarted"
    restarted = start_server(context, name, port, minimal)
    started_ns = time.monotonic_ns()
    ready_ns = await wait_for_health(restarted)
    clients = [f"client-{number}" for number in range(len(fleet.pids))]
    window = CpuWindow(
        {"server": restarted.pid, **dict(zip(clients, fleet.pids, strict=True))}
    )
    backends_before = processes.database_backends(database_name(context))
    window.start()
    say(f"  {restarted.name} is ready; waiting for the pages to catch up")
    sampler = ServerSampler(restarted.pid, service_ports(context))
    final = await wait_for_catch_up(
        fleet, sampler, context.settings.storm_deadline_seconds
    )
    ended_ns = time.monotonic_ns()
    window.stop()
    log_size = restarted.log_path.stat().st_size
    backends_after = processes.database_backends(database_name(context))
    server = {
        "clients_open_at_end": final["open"],
        "server_open_files_at_end": processes.open_files(restarted.pid),
        "server_rss_mib_at_end": processes.resident_mib(restarted.pid),
        **sampler.to_json(),
        **cpu_figures(
            window, clients, len(fleet.specs), backends_before, backends_after
        ),
    }
    pages = await fleet.results()
    await fleet.stop()
    await servers.stop(restarted)
    # Stopping a server that is still catching pages up cancels their
    # handlers, so errors logged then are counted apart from the storm's.
    server["server_log_errors"] = {
        "during_storm": servers.log_errors(restarted, end=log_size)["errors"],
        "while_stopping": servers.log_errors(restarted, start=log_size)["errors"],
    }
    return {
        "started_ns": started_ns,
        "ready_ns": ready_ns,
        "ended_ns": ended_ns,
        "pages": pages,
        "server": server,
    }


async def reconnect_storm(context: Context, minimal: bool = False) -> dict[str, Any]:
    """Kill the sockets' web process, change data meanwhile, restart, measure.

    With ``minimal`` the server is the minimal Litestar app of
    ``bench.minimal_app``, which answers a resume with ``#ready`` and has
    nothing to replay, and no data changes: the baseline, what the same
    pages cost a websocket server that does no work of its own.
    """
    settings = context.settings
    bench_soft, bench_hard = processes.raise_open_file_limit()
    port = storm_port()
    server = start_server(
        context, "storm-minimal" if minimal else "storm", port, minimal
    )
    await wait_for_health(server)
    server_limit = processes.open_file_limit(server.pid)
    sockets, limited_by = socket_limit(settings.storm_sockets, server_limit)
    if limited_by:
        say(f"  {limited_by}, not {settings.storm_sockets}")

    fleet, counts, first_connect = await connect_pages(context, server, sockets)
    topics = list(counts)
    before, before_kill = await hold_recent_positions(
        context, fleet, server, topics, minimal
    )
    killed_ns, targets, counted = await kill_and_change(
        context, fleet, server, topics, minimal
    )
    before_kill.update(counted)
    run = await restart_and_wait(context, fleet, port, minimal)
    pages, ready_ns = run["pages"], run["ready_ns"]

    result = {
        "clients": sockets,
        "clients_requested": settings.storm_sockets,
        "client_processes": len(fleet.processes),
        "clients_per_process_max": max(len(share) for share in fleet.shares),
        "sockets_per_topic": {
            "maven_board": counts[context.maven.topic],
            "small_pipelines": len(context.small),
            "per_small_pipeline": sorted(set(list(counts.values())[1:])),
        },
        "limits": {
            "bench_open_files": {"soft": bench_soft, "hard": bench_hard},
            "server_open_files": server_limit,
            "limited_by": limited_by,
            "listen_backlog": LISTEN_BACKLOG,
            "somaxconn": processes.read_number("/proc/sys/net/core/somaxconn"),
            "tcp_max_syn_backlog": processes.read_number(
                "/proc/sys/net/ipv4/tcp_max_syn_backlog"
            ),
            "client_open_timeout_s": storm_clients.OPEN_TIMEOUT,
            "deadline_s": settings.storm_deadline_seconds,
        },
        "first_connect": first_connect,
        "before_kill": before_kill,
        "while_down": {
            "changes": sum(targets[topic] - before[topic] for topic in topics),
            "change_rate_per_s": settings.storm_change_rate,
            "streams": len(topics),
            "events_expected": sum(
                (targets[topic] - before[topic]) * count
                for topic, count in counts.items()
            ),
        },
        "downtime_s": round((ready_ns - killed_ns) / 1e9, 3),
        "restart_to_ready_s": round((ready_ns - run["started_ns"]) / 1e9, 3),
        **storm_figures.timings(pages, ready_ns, killed_ns, run["ended_ns"]),
        **storm_figures.deliveries(pages, killed_ns),
        **storm_figures.attempts(pages, ready_ns),
        **run["server"],
    }
    result["caught_up_per_s"] = round(
        result["clients_caught_up"] / result["window_s"], 1
    )
    result["caught_up_per_s_ratio_to_first_connect"] = round(
        result["caught_up_per_s"] / first_connect["connects_per_s"], 2
    )
    result["target"] = catch_up_target(result["all_caught_up_s"])
    return result


def catch_up_target(all_caught_up_s: float | None) -> dict[str, Any]:
    """Check the target; a storm that did not finish by its deadline fails it."""
    if all_caught_up_s is not None:
        return CATCH_UP_TARGET.check(all_caught_up_s)
    return {
        "statistic": CATCH_UP_TARGET.statistic,
        "limit": CATCH_UP_TARGET.limit,
        "unit": CATCH_UP_TARGET.unit,
        "measured": None,
        "passed": False,
    }


def sum_counts(summaries: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for summary in summaries:
        total.update(summary)
    return dict(total)


def cpu_figures(
    window: CpuWindow,
    clients: list[str],
    sockets: int,
    backends_before: dict[int, float],
    backends_after: dict[int, float],
) -> dict[str, Any]:
    """CPU of the restarted server, the clients and the database's backends.

    Backends that started during the window count from zero, and backends
    that ended during it are missed.
    """
    server = window.used("server")
    database = sum(
        cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items()
    )
    return {
        "window_s": round(window.seconds, 3),
        "server_cpu_s": round(server, 3),
        "server_cpu_share": round(server / window.seconds, 3),
        "server_cpu_ms_per_client": round(server / sockets * 1e3, 3),
        "postgresql_backends_cpu_s": round(database, 3),
        "client_cpu_share": {
            name: round(window.used(name) / window.seconds, 3) for name in clients
        },
        "machine_cpu_busy": round(window.machine_busy, 3),
    }
