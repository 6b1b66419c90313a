"""A client process: it keeps many live sockets open and timestamps every frame.

The parent process drives it over a pipe with the commands "count", "reset",
"results" and "stop" (see ``bench.fleet``). Frames are matched to changes by
the first ``id="deal-<id>"`` they contain, so only that id and the receive
time are kept. Frames without one (presence, snapshots) are only counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEAL_ID = re.compile(r'id="deal-(\d+)"')
CONNECTS_AT_ONCE = 50
OPEN_TIMEOUT = 60.0


@dataclass(frozen=True)
class SocketSpec:
    url: str
    topic: str


@dataclass(frozen=True)
class ClientOptions:
    """Request headers, and whether to offer permessage-deflate as browsers do."""

    headers: dict[str, str]
    compression: bool = True


@dataclass
class Receiver:
    """The frames one socket received: (deal id, CLOCK_MONOTONIC ns).

    It follows the page's protocol (app.js) for frames whose header line is
    "#seq <stream> <number>". A repeated number is dropped. A jump past the
    next number is dropped too, and the client sends a replay request for
    the events it missed.
    """

    spec: SocketSpec
    frames: list[tuple[int, int]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    replaying: set[str] = field(default_factory=set)
    other_frames: int = 0
    snapshots: int = 0
    repeats: int = 0
    replay_requests: int = 0
    close_code: int | None = None

    async def receive(self, socket: ClientConnection) -> None:
        try:
            async for message in socket:
                received = time.monotonic_ns()
                text = message if isinstance(message, str) else message.decode()
                if await self.in_sequence(socket, text):
                    self.record(text, received)
        except ConnectionClosed:
            pass
        self.close_code = socket.close_code

    async def in_sequence(self, socket: ClientConnection, text: str) -> bool:
        """Apply the page's sequence rules; return whether ``text`` is an event."""
        if not text.startswith("#"):
            return True
        header = text.split("\n", 1)[0][1:].split(" ")
        if header[0] == "snap":
            self.positions[header[1]] = int(header[2])
            self.snapshots += 1
            return False
        if header[0] != "seq":
            self.other_frames += 1
            return False
        stream, seq = header[1], int(header[2])
        # NOTE: a page starts from the position its render carried, but these
        # sockets have no page, so the first event frame of a stream is taken
        # as the start and a gap before it goes unnoticed.
        last = self.positions.get(stream)
        if last is not None and seq <= last:
            self.repeats += 1
            return False
        if last is not None and seq > last + 1:
            if stream not in self.replaying:
                self.replaying.add(stream)
                self.replay_requests += 1
                request = {"type": "replay", "stream": stream, "after": last}
                await socket.send(json.dumps(request))
            return False
        self.positions[stream] = seq
        self.replaying.discard(stream)
        return True

    def record(self, text: str, received: int) -> None:
        match = DEAL_ID.search(text)
        if match is None:
            self.other_frames += 1
            return
        self.frames.append((int(match.group(1)), received))
        self.sizes.append(len(text))

    def clear(self) -> None:
        self.frames = []
        self.sizes = []
        self.other_frames = 0
        self.snapshots = 0
        self.repeats = 0
        self.replay_requests = 0

    def result(self) -> dict[str, Any]:
        return {
            "topic": self.spec.topic,
            "frames": self.frames,
            "sizes": self.sizes,
            "other_frames": self.other_frames,
            "snapshots": self.snapshots,
            "repeats": self.repeats,
            "replay_requests": self.replay_requests,
            "closed_early": self.close_code,
        }


async def open_socket(
    spec: SocketSpec, options: ClientOptions, limit: asyncio.Semaphore
) -> ClientConnection:
    # Browsers send no pings, so neither do these clients.
    async with limit:
        return await connect(
            spec.url,
            additional_headers=options.headers,
            compression="deflate" if options.compression else None,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            max_size=None,
        )


async def serve(
    specs: list[SocketSpec], options: ClientOptions, pipe: Connection
) -> None:
    limit = asyncio.Semaphore(CONNECTS_AT_ONCE)
    try:
        sockets = await asyncio.gather(
            *(open_socket(spec, options, limit) for spec in specs)
        )
    except Exception as error:
        pipe.send(("error", f"{type(error).__name__}: {error}"))
        return

    receivers = [Receiver(spec) for spec in specs]
    tasks = [
        asyncio.create_task(receiver.receive(socket))
        for receiver, socket in zip(receivers, sockets, strict=True)
    ]
    extensions = {
        type(extension).__name__
        for socket in sockets
        for extension in socket.protocol.extensions
    }
    pipe.send(("ready", len(sockets), sorted(extensions)))

    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command == "count":
            pipe.send(("count", sum(len(receiver.frames) for receiver in receivers)))
        elif command == "reset":
            for receiver in receivers:
                receiver.clear()
            pipe.send(("reset",))
        elif command == "results":
            pipe.send(("results", [receiver.result() for receiver in receivers]))
            for receiver in receivers:
                receiver.clear()
        elif command == "stop":
            break

    await asyncio.gather(
        *(socket.close() for socket in sockets), return_exceptions=True
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(("stopped",))


def run(specs: list[SocketSpec], options: ClientOptions, pipe: Connection) -> None:
    """Process entry point: connect ``specs``, then follow the pipe's commands."""
    # Ctrl-C reaches the whole process group, and the parent stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve(specs, options, pipe))
