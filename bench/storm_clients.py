"""A client process for the reconnect storm: sockets that behave like pages.

Each socket follows the live protocol of ``app/static/app.js``. It connects
with ``resume=1`` and sends the positions it has applied in a resume message, on
the first connect and on every reconnect. It applies event ``n`` of a
stream only when it holds ``n - 1``, drops repeats, sends one replay
request per stream when the numbers jump, and takes a ``#snap`` frame's
number as its new position. After any close but 1008 and 4401 it
reconnects after the page's jittered delay (``reconnect_delay``).

The parent process drives it over a pipe (see ``bench.storm``) with
"status", ("targets", positions), ("mark", ns), "results" and "stop".
Times are ``time.monotonic_ns()``, comparable with the parent's.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# The first connects are limited so that setting up does not look like a storm.
CONNECTS_AT_ONCE = 50
# Chromium gives up an opening handshake after 240 s
# (kHandshakeTimeoutIntervalInSeconds in net/websockets/websocket_stream.cc).
# A page that waits this long counts a failed attempt and retries.
OPEN_TIMEOUT = 240.0
# Close codes after which the page stays closed: a refused subscription and
# a sign-out.
FINAL_CLOSE_CODES = (1008, 4401)
RECONNECT_FIRST_CEILING_SECONDS = 0.5
RECONNECT_MAX_CEILING_SECONDS = 4.0
# File descriptors a client process needs besides its sockets.
SPARE_FILES = 64


def reconnect_delay(retries: int) -> float:
    """Return the page's wait before reconnecting, in seconds.

    app.js sets ``Math.random() * Math.min(4000, 500 * 2 ** retryCount)`` ms,
    and htmx-ext-ws 2.0.4 passes the failed attempts since the last open.
    The first reconnect after a close waits up to 0.5 s, the next up to 1 s,
    then 2 s, and from the fourth on up to 4 s.
    """
    # The exponent is capped only to keep the float in range.
    ceiling = RECONNECT_FIRST_CEILING_SECONDS * 2 ** min(retries, 16)
    return random.random() * min(RECONNECT_MAX_CEILING_SECONDS, ceiling)


@dataclass(frozen=True)
class PageSpec:
    """One page: its socket URL, its streams and the positions its render held."""

    url: str
    topics: tuple[str, ...]
    positions: dict[str, int]


@dataclass
class Page:
    """One socket and what it saw since the last mark.

    ``attempts`` contains (start ns, end ns, outcome) for each connect, where
    the outcome is "open", "refused", "timeout", "status <code>" or the
    name of the exception. ``other_frames`` counts frames without a stream
    header, which are presence fragments.
    """

    spec: PageSpec
    headers: dict[str, str]
    positions: dict[str, int] = field(default_factory=dict)
    replaying: set[str] = field(default_factory=set)
    targets: dict[str, int] = field(default_factory=dict)
    mark_ns: int = 0
    attempts: list[tuple[int, int, str]] = field(default_factory=list)
    # (CLOCK_MONOTONIC ns, close code) of each connection that ended.
    closes: list[tuple[int, int]] = field(default_factory=list)
    socket: ClientConnection | None = None
    # When the connect in progress started, if one is.
    connecting_ns: int | None = None
    opened_ns: int = 0
    ready_ns: int | None = None
    caught_up_ns: int | None = None
    final_code: int | None = None
    applied: int = 0
    repeats: int = 0
    gaps: int = 0
    replay_requests: int = 0
    snapshots: int = 0
    other_frames: int = 0

    def __post_init__(self) -> None:
        self.positions = dict(self.spec.positions)

    @property
    def at_targets(self) -> bool:
        return all(
            self.positions.get(topic, 0) >= target
            for topic, target in self.targets.items()
        )

    def mark(self, mark_ns: int) -> None:
        """Start counting afresh; a catch-up must come on a later connection."""
        self.mark_ns = mark_ns
        self.attempts = []
        self.closes = []
        self.caught_up_ns = None
        self.applied = self.repeats = self.gaps = 0
        self.replay_requests = self.snapshots = self.other_frames = 0

    def set_targets(self, targets: dict[str, int]) -> None:
        self.targets = {topic: targets[topic] for topic in self.spec.topics}
        self.check_caught_up(time.monotonic_ns())

    def check_caught_up(self, now: int) -> None:
        if (
            self.caught_up_ns is None
            and self.targets
            and self.opened_ns > self.mark_ns > 0
            and self.at_targets
        ):
            self.caught_up_ns = now

    async def run(self, first_connect: asyncio.Semaphore) -> None:
        """Connect, follow the socket, and reconnect as the page does."""
        retries = 0
        async with first_connect:
            socket = await self.connect()
        while True:
            if socket is not None:
                retries = 0
                code = await self.follow(socket)
                if code in FINAL_CLOSE_CODES:
                    self.final_code = code
                    return
            await asyncio.sleep(reconnect_delay(retries))
            retries += 1
            socket = await self.connect()

    async def connect(self) -> ClientConnection | None:
        started = time.monotonic_ns()
        self.connecting_ns = started
        outcome = "open"
        socket = None
        try:
            # Browsers send no pings, so neither do these clients.
            socket = await connect(
                self.spec.url,
                additional_headers=self.headers,
                compression="deflate",
                open_timeout=OPEN_TIMEOUT,
                ping_interval=None,
                max_size=None,
                proxy=None,
            )
        except ConnectionRefusedError:
            outcome = "refused"
        except TimeoutError:
            outcome = "timeout"
        except InvalidStatus as error:
            outcome = f"status {error.response.status_code}"
        except (OSError, ConnectionClosed) as error:
            outcome = type(error).__name__
        self.connecting_ns = None
        self.attempts.append((started, time.monotonic_ns(), outcome))
        return socket

    async def follow(self, socket: ClientConnection) -> int:
        """Resume on ``socket`` and apply its frames; return the close code."""
        self.socket = socket
        self.opened_ns = time.monotonic_ns()
        self.ready_ns = None
        self.replaying.clear()
        try:
            await socket.send(json.dumps({"type": "resume", "streams": self.positions}))
            async for message in socket:
                text = message if isinstance(message, str) else message.decode()
                await self.handle(socket, text, time.monotonic_ns())
        except ConnectionClosed:
            pass
        self.socket = None
        code = socket.close_code or 1006
        self.closes.append((time.monotonic_ns(), code))
        return code

    async def handle(self, socket: ClientConnection, text: str, now: int) -> None:
        if not text.startswith("#"):
            self.other_frames += 1
            return
        header = text.split("\n", 1)[0][1:].split(" ")
        kind = header[0]
        if kind == "ready":
            self.ready_ns = now
            self.check_caught_up(now)
            return
        if kind not in ("seq", "snap") or len(header) < 3:
            self.other_frames += 1
            return
        stream, seq = header[1], int(header[2])
        if kind == "snap":
            self.positions[stream] = seq
            self.replaying.discard(stream)
            self.snapshots += 1
            self.check_caught_up(now)
            return

        last = self.positions.get(stream, 0)
        if seq <= last:
            self.repeats += 1
            return
        if seq > last + 1:
            self.gaps += 1
            if stream not in self.replaying:
                self.replaying.add(stream)
                self.replay_requests += 1
                request = {"type": "replay", "stream": stream, "after": last}
                await socket.send(json.dumps(request))
            return
        self.positions[stream] = seq
        self.replaying.discard(stream)
        self.applied += 1
        self.check_caught_up(now)

    def result(self) -> dict[str, Any]:
        return {
            "topics": list(self.spec.topics),
            "positions": self.positions,
            "targets": self.targets,
            "attempts": self.attempts,
            "closes": self.closes,
            "connecting_ns": self.connecting_ns,
            "opened_ns": self.opened_ns,
            "ready_ns": self.ready_ns,
            "caught_up_ns": self.caught_up_ns,
            "final_code": self.final_code,
            "applied": self.applied,
            "repeats": self.repeats,
            "gaps": self.gaps,
            "replay_requests": self.replay_requests,
            "snapshots": self.snapshots,
            "other_frames": self.other_frames,
        }


def status(pages: list[Page]) -> tuple[str, int, int, int, int]:
    """Count the pages that are open, got ``#ready``, hold the targets, caught up."""
    open_pages = [page for page in pages if page.socket is not None]
    return (
        "status",
        len(open_pages),
        sum(page.ready_ns is not None for page in open_pages),
        sum(page.at_targets for page in pages),
        sum(page.caught_up_ns is not None for page in pages),
    )


def raise_open_file_limit(sockets: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return it.

    Raises RuntimeError if the hard limit cannot hold ``sockets`` sockets.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and sockets + SPARE_FILES > hard:
        raise RuntimeError(
            f"a client process needs {sockets + SPARE_FILES} open files for "
            f"{sockets} sockets, but its hard RLIMIT_NOFILE is {hard}; start "
            "more client processes"
        )
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


async def serve(
    specs: list[PageSpec], headers: dict[str, str], pipe: Connection
) -> None:
    try:
        raise_open_file_limit(len(specs))
    except (RuntimeError, ValueError, OSError) as error:
        pipe.send(("error", str(error)))
        return
    pages = [Page(spec, headers) for spec in specs]
    first_connect = asyncio.Semaphore(CONNECTS_AT_ONCE)
    tasks = [asyncio.create_task(page.run(first_connect)) for page in pages]
    pipe.send(("started", len(pages)))

    while True:
        command = await asyncio.to_thread(pipe.recv)
        name, argument = command if isinstance(command, tuple) else (command, None)
        if name == "status":
            pipe.send(status(pages))
        elif name == "targets":
            for page in pages:
                page.set_targets(argument)
            pipe.send(("targets",))
        elif name == "mark":
            before = summarize(pages)
            for page in pages:
                page.mark(argument)
            pipe.send(("mark", before))
        elif name == "results":
            pipe.send(("results", [page.result() for page in pages]))
        elif name == "stop":
            break

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Dropping the connections skips thousands of close handshakes with a
    # busy server. The server's work for them is not measured.
    for page in pages:
        if page.socket is not None:
            page.socket.transport.abort()
    pipe.send(("stopped",))


def summarize(pages: list[Page]) -> dict[str, int]:
    """Count what the pages saw since the last mark, without their timings."""
    attempts = [outcome for page in pages for _, _, outcome in page.attempts]
    return {
        "attempts": len(attempts),
        "failed_attempts": sum(outcome != "open" for outcome in attempts),
        "repeats": sum(page.repeats for page in pages),
        "gaps": sum(page.gaps for page in pages),
        "replay_requests": sum(page.replay_requests for page in pages),
        "snapshots": sum(page.snapshots for page in pages),
        "closed_for_good": sum(page.final_code is not None for page in pages),
    }


def run(specs: list[PageSpec], headers: dict[str, str], pipe: Connection) -> None:
    """Process entry point: open the pages, then follow the pipe's commands."""
    # Ctrl-C reaches the whole process group, and the parent stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve(specs, headers, pipe))
