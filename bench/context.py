"""The state that every measurement shares: settings, data, servers, a writer."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import servers
from bench.changes import Change, MovePlanner
from bench.clients import ClientOptions
from bench.database import PipelineDeals
from bench.fanout import wait_for_deliveries
from bench.fleet import Fleet, socket_specs
from bench.servers import Server
from bench.session import Session
from bench.settings import Settings


@dataclass
class Context:
    settings: Settings
    stack: contextlib.AsyncExitStack
    log_dir: Path
    # Environment of the servers started from now on.
    server_env: dict[str, str]
    email: str
    password: str
    maven: PipelineDeals
    small: list[PipelineDeals]
    has_tickets: bool
    maven_moves: MovePlanner
    small_moves: MovePlanner
    servers: dict[str, Server] = field(default_factory=dict)
    writer: Session | None = None

    @property
    def redis_url(self) -> str:
        return self.server_env["REDIS_URL"]

    @property
    def redis_prefix(self) -> str:
        return self.server_env["REDIS_PREFIX"]

    def session(self) -> Session:
        """Return the session that sends every move, signed in on "writer"."""
        if self.writer is None:
            raise RuntimeError("the writer session is not signed in yet")
        return self.writer

    def pid(self, name: str) -> int:
        return self.servers[name].pid

    async def start_servers(
        self, names: list[str], minimal: bool = False
    ) -> list[Server]:
        """Start servers together and wait for all; each stops when the run ends."""
        started = []
        for name in names:
            start = servers.start_minimal if minimal else servers.start_app
            server = start(name, self.server_env, self.log_dir)
            self.stack.push_async_callback(servers.stop, server)
            self.servers[name] = server
            started.append(server)
        for server in started:
            await servers.wait_until_healthy(server)
        return started

    async def start_fleet(
        self,
        targets: list[Server],
        topics: list[str],
        per_topic: int,
        processes: int,
        compression: bool = True,
    ) -> Fleet:
        """Open ``per_topic`` sockets per topic, spread over ``targets``."""
        ws_urls = [server.url.replace("http://", "ws://") for server in targets]
        headers = {"Cookie": self.session().cookie_header()}
        fleet = Fleet(
            socket_specs(ws_urls, topics, per_topic),
            ClientOptions(headers=headers, compression=compression),
            processes,
        )
        self.stack.callback(fleet.terminate)
        await fleet.start()
        return fleet


async def warm_up(fleet: Fleet, send: Callable[[], Awaitable[list[Change]]]) -> None:
    """Send a few changes and wait for them, so first-use costs fall outside."""
    changes = await send()
    await wait_for_deliveries(fleet, sum(fleet.per_topic[c.topic] for c in changes))
