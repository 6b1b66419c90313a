"""The one websocket each page opens, and the process's share of the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, WebSocket, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromQuery

from app.auth.service import CurrentUser
from app.boards import BoardFilter
from app.errors import FieldError, NotFound
from app.events.service import set_bus
from realtime.bus import Bus, consume
from realtime.hub import Client, Hub

logger = logging.getLogger(__name__)

# Close code for a refused subscription; the htmx ws extension does not
# reconnect after it.
CLOSE_POLICY_VIOLATION = 1008


@websocket("/live")
async def live_socket(
    socket: WebSocket[CurrentUser, dict[str, Any], State],
    hub: NamedDependency[Hub],
    topic: FromQuery[list[str]],
    person: FromQuery[str | None] = None,
    team: FromQuery[str | None] = None,
) -> None:
    from app.web.topics import resolve_topic

    user = socket.user
    await socket.accept()
    client = Client(socket=socket, user_id=user.id)
    try:
        board = BoardFilter.parse(person, team)
        variants = [(name, await resolve_topic(name, user, board)) for name in topic]
    except (FieldError, NotFound) as error:
        logger.info(
            "subscription refused user_id=%s topics=%s: %s", user.id, topic, error
        )
        await socket.close(code=CLOSE_POLICY_VIOLATION, reason=str(error)[:120])
        return

    for name, variant in variants:
        hub.join(client, name, variant)
    writer = asyncio.create_task(client.write())
    try:
        while not client.closing:
            # Pages send nothing yet; reading notices the client going away.
            await socket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        hub.leave(client)
        client.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=1)
        writer.cancel()


def provide_hub(socket: WebSocket) -> Hub:
    return socket.app.state.hub


@contextlib.asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Subscribe this process to the bus for as long as the app runs."""
    from app.deals.live import render_deal_page, render_pipeline
    from app.imports.live import render_import
    from app.tickets.live import render_ticket_board, render_ticket_page

    settings = app.state.settings
    bus = Bus(app.state.redis, settings.redis_prefix)
    hub = Hub()
    hub.register("pipeline", render_pipeline)
    hub.register("deal", render_deal_page)
    hub.register("tickets", render_ticket_board)
    hub.register("ticket", render_ticket_page)
    hub.register("import", render_import)
    app.state.hub = hub
    set_bus(bus)

    ready = asyncio.Event()
    consumer = asyncio.create_task(consume(bus, hub.dispatch, ready))
    await asyncio.wait_for(ready.wait(), timeout=10)
    try:
        yield
    finally:
        hub.close_all()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        set_bus(None)
        logger.info("realtime stopped")
