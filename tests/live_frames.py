"""Reading the frames a live socket sends, as a page's script does."""

from __future__ import annotations

import asyncio

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
