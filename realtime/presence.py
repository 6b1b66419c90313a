"""Who is looking at a stream right now, and what they are editing.

Each open socket has an entry in a Redis hash per topic, refreshed by its
web process every ``HEARTBEAT`` seconds. A socket that closes removes its
entry at once; the entries of a process that died stop being refreshed and
are dropped by the next reader once they are ``EXPIRY`` seconds old. Any
change is announced on the bus, so every process re-renders the topic's
viewers for its own sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis

from realtime.bus import Bus
from realtime.hub import PRESENCE_CHANGED, Client, Hub
from realtime.messages import Event, Viewer

logger = logging.getLogger(__name__)

HEARTBEAT = 10.0
EXPIRY = 30.0
PUSH_DELAY = 0.25


encode_viewer = msgspec.json.Encoder().encode
decode_viewer = msgspec.json.Decoder(Viewer).decode


@dataclass
class Presence:
    redis: Redis
    prefix: str

    def key(self, topic: str) -> str:
        return f"{self.prefix}presence:{topic}"

    async def set(self, topic: str, socket_id: str, viewer: Viewer) -> None:
        stamped = msgspec.structs.replace(viewer, seen=time.time())
        await self.redis.hset(self.key(topic), socket_id, encode_viewer(stamped))

    async def remove(self, topic: str, socket_id: str) -> None:
        await self.redis.hdel(self.key(topic), socket_id)

    async def refresh(self, entries: list[tuple[str, str, Viewer]]) -> None:
        """Restamp the entries of this process's live sockets."""
        if not entries:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for topic, socket_id, viewer in entries:
                stamped = msgspec.structs.replace(viewer, seen=now)
                pipe.hset(self.key(topic), socket_id, encode_viewer(stamped))
            await pipe.execute()

    async def viewers(self, topic: str) -> tuple[list[Viewer], bool]:
        """Return the topic's live viewers, one per user, and whether any
        expired entries were dropped on the way."""
        entries = await self.redis.hgetall(self.key(topic))
        cutoff = time.time() - EXPIRY
        expired = []
        by_user: dict[int, Viewer] = {}
        for socket_id, raw in entries.items():
            viewer = decode_viewer(raw)
            if viewer.seen < cutoff:
                expired.append(socket_id)
                continue
            known = by_user.get(viewer.user_id)
            # A user with several tabs open is editing if any tab is.
            if known is None or (viewer.editing and not known.editing) or viewer.typing:
                by_user[viewer.user_id] = viewer
        if expired:
            await self.redis.hdel(self.key(topic), *expired)
        return sorted(by_user.values(), key=lambda viewer: viewer.name), bool(expired)


# Renders the viewers of a topic as the fragment pages swap in.
PresenceRenderer = Callable[[str, list[Viewer]], str]


class PresenceTracker:
    """Keeps the presence entries of this process's sockets and pushes changes."""

    def __init__(
        self, presence: Presence, bus: Bus, hub: Hub, render: PresenceRenderer
    ) -> None:
        self.presence = presence
        self.bus = bus
        self.hub = hub
        self.render = render
        self.pending: set[str] = set()
        self.flush_task: asyncio.Task[None] | None = None
        hub.presence_handler = self.push

    async def joined(self, client: Client) -> None:
        for topic, _ in client.subscriptions:
            await self.presence.set(topic, client.socket_id, client.viewer)
        await self.announce([topic for topic, _ in client.subscriptions])

    async def left(self, client: Client, topics: list[str]) -> None:
        for topic in topics:
            await self.presence.remove(topic, client.socket_id)
        await self.announce(topics)

    async def changed(self, client: Client, editing: str | None, typing: bool) -> None:
        client.viewer = msgspec.structs.replace(
            client.viewer, editing=editing, typing=typing
        )
        await self.joined(client)

    async def announce(self, topics: list[str]) -> None:
        if topics:
            await self.bus.publish([control_event(PRESENCE_CHANGED, topics)])

    async def push(self, topics: list[str]) -> None:
        """Send the current viewers of each topic to its local sockets, soon.

        Changes are gathered for ``PUSH_DELAY`` seconds and each topic is
        rendered once for all of them, so a hundred pages opening a board
        at once cost one render, not a hundred.
        """
        self.pending.update(topics)
        if self.flush_task is None or self.flush_task.done():
            self.flush_task = asyncio.create_task(self.flush_later())

    async def flush_later(self) -> None:
        await asyncio.sleep(PUSH_DELAY)
        topics, self.pending = self.pending, set()
        try:
            await self.send_viewers(topics)
        except Exception:
            logger.exception("presence push failed topics=%s", sorted(topics))

    async def send_viewers(self, topics: set[str]) -> None:
        for topic in topics:
            variants = self.hub.rooms.get(topic)
            if not variants:
                continue
            viewers, _ = await self.presence.viewers(topic)
            text = self.render(topic, viewers)
            for clients in variants.values():
                for client in list(clients):
                    client.offer(text)

    async def heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.heartbeat()
            except Exception:
                logger.exception("presence heartbeat failed")

    async def heartbeat(self) -> None:
        entries = [
            (topic, client.socket_id, client.viewer)
            for client in list(self.hub.clients)
            for topic, _ in client.subscriptions
        ]
        await self.presence.refresh(entries)
        stale = []
        for topic in list(self.hub.rooms):
            _, expired = await self.presence.viewers(topic)
            if expired:
                stale.append(topic)
        await self.announce(stale)


def control_event(kind: str, topics: list[str]) -> Event:
    return Event(id=0, kind=kind, topics=topics, record_type="", record_id=0)
