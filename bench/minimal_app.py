"""A minimal Litestar fan-out app, the baseline for CPU and latency per delivery.

One Redis pattern subscription per process and one ``send_text`` per socket,
with no sessions, no database and no rendering. A frame published on
``<BENCH_CHANNEL_PREFIX><topic>`` goes to every local socket of that topic.
Run it with ``uvicorn --factory bench.minimal_app:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator

from litestar import Litestar, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

RESUME = '{"type": "resume"'
READY = "#ready\n"


def create_app() -> Litestar:
    redis_url = os.environ["REDIS_URL"]
    prefix = os.environ["BENCH_CHANNEL_PREFIX"]
    rooms: dict[str, set[WebSocket]] = defaultdict(set)

    @websocket("/live")
    async def live(socket: WebSocket, topic: str) -> None:
        await socket.accept()
        rooms[topic].add(socket)
        try:
            while True:
                # A page's resume message gets #ready as if nothing was
                # missed, so the reconnect storm's pages can run against
                # this app too.
                if (await socket.receive_text()).startswith(RESUME):
                    await socket.send_text(READY)
        except WebSocketDisconnect:
            pass
        finally:
            rooms[topic].discard(socket)

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    async def forward(pubsub: PubSub) -> None:
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            topic = message["channel"].decode()[len(prefix) :]
            text = message["data"].decode()
            for socket in list(rooms.get(topic, ())):
                with contextlib.suppress(WebSocketDisconnect):
                    await socket.send_text(text)

    @contextlib.asynccontextmanager
    async def subscription(app: Litestar) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url)
        pubsub = redis.pubsub()
        await pubsub.psubscribe(f"{prefix}*")
        forwarder = asyncio.create_task(forward(pubsub))
        try:
            yield
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            await pubsub.aclose()
            await redis.aclose()

    return Litestar(route_handlers=[live, health], lifespan=[subscription])
