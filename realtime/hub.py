"""Route events from the bus to the sockets of this process.

A subscription is a topic ("pipeline:3") and a variant: the part of the
socket's view that changes what it must be sent, such as a board filter.
For each event the hub asks the topic's renderer once for every variant
that has sockets here, and queues the same text to all of them. Rendering
cost grows with the number of variants, not with the number of sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from realtime.messages import Event

logger = logging.getLogger(__name__)

# A renderer turns one event into the text each variant of a topic receives.
# ``cache`` is shared by every topic of the same event, so renderers of two
# topics can load the changed record once.
Renderer = Callable[[Event, str, set[str], dict[str, Any]], Awaitable[dict[str, str]]]

SEND_QUEUE_SIZE = 256
# Close code 1013 ("try again later") makes the htmx ws extension reconnect.
CLOSE_TRY_AGAIN = 1013
CLOSE_SERVICE_RESTART = 1012


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(eq=False)
class Client:
    """One connected socket and its bounded queue of outgoing messages."""

    socket: Socket
    user_id: int
    subscriptions: list[tuple[str, str]] = field(default_factory=list)
    queue: asyncio.Queue[str | None] = field(
        default_factory=lambda: asyncio.Queue(SEND_QUEUE_SIZE)
    )
    closing: bool = False
    close_code: int = 1000

    def offer(self, text: str) -> None:
        """Queue ``text``; a client whose queue is full is disconnected.

        A full queue means the client stopped reading. Dropping it keeps
        one slow reader from holding memory or delaying everyone else, and
        on reconnect it renders its page afresh.
        """
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            logger.warning(
                "socket send queue full, disconnecting user_id=%s", self.user_id
            )
            self.stop(CLOSE_TRY_AGAIN)

    def stop(self, code: int = 1000) -> None:
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        # Make room for the wake-up if the queue is full.
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def write(self) -> None:
        """Send queued messages until stopped, then close the socket."""
        while True:
            text = await self.queue.get()
            if text is None:
                break
            await self.socket.send_text(text)
        await self.socket.close(code=self.close_code)


class Hub:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, set[Client]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.renderers: dict[str, Renderer] = {}
        self.clients: set[Client] = set()

    def register(self, family: str, renderer: Renderer) -> None:
        """Render events of topics named ``family`` or ``family:<id>``."""
        self.renderers[family] = renderer

    def join(self, client: Client, topic: str, variant: str = "") -> None:
        self.clients.add(client)
        self.rooms[topic][variant].add(client)
        client.subscriptions.append((topic, variant))

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        for topic, variant in client.subscriptions:
            variants = self.rooms.get(topic)
            if variants is None:
                continue
            members = variants.get(variant)
            if members is not None:
                members.discard(client)
                if not members:
                    del variants[variant]
            if not variants:
                del self.rooms[topic]
        client.subscriptions.clear()

    def disconnect_user(self, user_id: int) -> None:
        for client in [c for c in self.clients if c.user_id == user_id]:
            client.stop()

    def close_all(self, code: int = CLOSE_SERVICE_RESTART) -> None:
        for client in list(self.clients):
            client.stop(code)

    async def dispatch(self, event: Event) -> int:
        """Render ``event`` for each local variant and queue it; return the sends."""
        cache: dict[str, Any] = {}
        sent = 0
        for topic in event.topics:
            variants = self.rooms.get(topic)
            if not variants:
                continue

            renderer = self.renderers.get(topic.partition(":")[0])
            if renderer is None:
                logger.error("no renderer for topic=%s event_id=%s", topic, event.id)
                continue

            fragments = await renderer(event, topic, set(variants), cache)
            for variant, text in fragments.items():
                if not text:
                    continue
                for client in list(variants.get(variant, ())):
                    client.offer(text)
                    sent += 1
        return sent
