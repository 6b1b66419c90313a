"""Reading the frames a live socket sends, as a page's script does."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from websockets import ClientConnection


async def next_event(socket: ClientConnection, seconds: float = 5) -> str:
    """Return the next frame that belongs to a stream, skipping presence frames."""
    async with asyncio.timeout(seconds):
        while True:
            text = await socket.recv()
            if isinstance(text, str) and text.startswith(("#seq ", "#snap ")):
                return text


async def next_presence(socket: ClientConnection, seconds: float = 5) -> str:
    async with asyncio.timeout(seconds):
        while True:
            text = await socket.recv()
            if isinstance(text, str) and not text.startswith("#"):
                return text


@contextlib.asynccontextmanager
async def publishing_from_test_process() -> AsyncIterator[None]:
    """Publish the test process's own changes at once, as the web does."""
    from redis.asyncio import Redis

    from app.events.service import set_bus
    from realtime.bus import Bus
    from tests.conftest import REDIS_URL

    redis = Redis.from_url(REDIS_URL)
    set_bus(Bus(redis, os.environ["REDIS_PREFIX"]))
    try:
        yield
    finally:
        set_bus(None)
        await redis.aclose()
