"""Database queries a web process issues, counted on the wire by ``CountingProxy``.

The web process under test connects to PostgreSQL through the proxy. Each
window's counts are divided by the number of pages, events or moves in it.

- ``statements``: executed SQL statements, each a Bind of a prepared
  statement or a simple Query.
- ``round_trip``: messages after which the client waits for the server
  (Sync or Query).
- ``connection_reset``: the query asyncpg's pool runs when a connection is
  returned to it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import servers
from bench.changes import post_moves
from bench.context import Context, warm_up
from bench.fanout import wait_for_deliveries
from bench.pgproxy import CountingProxy
from bench.progress import say
from bench.servers import Server
from bench.session import Session

WARMUP = 3
RATE = 10.0
MESSAGE_KINDS = (
    "round_trip",
    "execute",
    "simple_query",
    "transaction_command",
    "connection_reset",
    "parse",
)


class QueryWindow:
    """The proxy's counts between ``start`` and ``stop``."""

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        self.messages: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()

    def start(self) -> None:
        self._messages, self._statements = self.proxy.snapshot()

    def stop(self) -> None:
        messages, statements = self.proxy.snapshot()
        self.messages = messages - self._messages
        self.statements = statements - self._statements

    def per(self, units: int, unit: str) -> dict[str, Any]:
        """Return the counts divided by ``units`` (pages, events or moves)."""
        statements = sum(self.statements.values())
        return {
            "unit": unit,
            "units": units,
            "statements_per_unit": round(statements / units, 2),
            **{
                f"{kind}_per_unit": round(self.messages[kind] / units, 2)
                for kind in MESSAGE_KINDS
            },
            "statements": {
                text: round(count / units, 2)
                for text, count in self.statements.most_common()
            },
        }


def proxied_url(direct_url: str, port: int) -> str:
    """Return ``direct_url`` pointed at the proxy on ``port``, without TLS."""
    parts = urlsplit(direct_url)
    credentials = parts.netloc.rpartition("@")[0]
    location = f"127.0.0.1:{port}"
    netloc = f"{credentials}@{location}" if credentials else location
    query = f"{parts.query}&sslmode=disable" if parts.query else "sslmode=disable"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


async def count_queries(context: Context) -> dict[str, Any]:
    """Count a web process's queries per board page, live event and move POST.

    The events are moves POSTed to the "writer" process and delivered to
    sockets on the counted process. In the last window the moves are POSTed
    to the counted process itself, which then has no sockets open.
    """
    direct = context.server_env["DATABASE_URL"]
    upstream = urlsplit(direct)
    proxy = CountingProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432)
    await proxy.start()
    context.stack.push_async_callback(proxy.close)

    context.server_env["DATABASE_URL"] = proxied_url(direct, proxy.port)
    try:
        (server,) = await context.start_servers(["counted"])
    finally:
        context.server_env["DATABASE_URL"] = direct
    session = Session(server.url)
    context.stack.push_async_callback(session.close)
    await session.sign_in(context.email, context.password)

    result = {
        "method": "wire-protocol proxy between the web process and PostgreSQL",
        "board_page": await count_page_queries(context, proxy, session),
        "live_event": await count_event_queries(context, proxy, server),
        "move_post": await count_move_queries(context, proxy, session),
    }
    await session.close()
    await servers.stop(server)
    return result


async def count_page_queries(
    context: Context, proxy: CountingProxy, session: Session
) -> dict[str, Any]:
    pages = context.settings.query_pages
    board = f"/pipelines/{context.maven.id}"
    say(f"  board pages: {pages} requests")
    for _ in range(WARMUP):
        await session.http.get(board)

    window = QueryWindow(proxy)
    window.start()
    for _ in range(pages):
        await session.http.get(board)
    window.stop()
    return window.per(pages, "page")


async def count_event_queries(
    context: Context, proxy: CountingProxy, server: Server
) -> dict[str, Any]:
    settings = context.settings
    planner = context.maven_moves
    writer = context.session()
    fleet = await context.start_fleet(
        [server], [context.maven.topic], settings.query_sockets, 1
    )
    await warm_up(fleet, lambda: post_moves(writer, planner.take(WARMUP), RATE))
    await fleet.reset()
    say(f"  live events: {settings.query_events} moves to the board's sockets")

    window = QueryWindow(proxy)
    window.start()
    changes = await post_moves(writer, planner.take(settings.query_events), RATE)
    await wait_for_deliveries(fleet, len(changes) * settings.query_sockets)
    window.stop()

    sockets = await fleet.take()
    await fleet.stop()
    return {
        **window.per(len(changes), "event"),
        "sockets": settings.query_sockets,
        "deliveries": sum(len(socket["frames"]) for socket in sockets),
    }


async def count_move_queries(
    context: Context, proxy: CountingProxy, session: Session
) -> dict[str, Any]:
    moves = context.settings.query_moves
    planner = context.maven_moves
    say(f"  move POSTs: {moves} moves to the counted process")
    await post_moves(session, planner.take(WARMUP), RATE)

    window = QueryWindow(proxy)
    window.start()
    posted = await post_moves(session, planner.take(moves), RATE)
    window.stop()
    return {
        **window.per(len(posted), "move"),
        "rejected": sum(change.status != 204 for change in posted),
    }
