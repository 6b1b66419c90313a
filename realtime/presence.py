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
import weakref
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
        await self.apply({(topic, socket_id): viewer})

    async def remove(self, topic: str, socket_id: str) -> None:
        await self.apply({(topic, socket_id): None})

    async def apply(self, writes: dict[tuple[str, str], Viewer | None]) -> None:
        """Set or remove (with None) many entries in one round trip."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (topic, socket_id), viewer in writes.items():
                if viewer is None:
                    pipe.hdel(self.key(topic), socket_id)
                else:
                    stamped = msgspec.structs.replace(viewer, seen=now)
                    pipe.hset(self.key(topic), socket_id, encode_viewer(stamped))
            await pipe.execute()

    async def refresh(self, entries: list[tuple[str, str, Viewer]]) -> None:
        """Restamp the entries of this process's live sockets."""
        if entries:
            await self.apply({(topic, socket_id): v for topic, socket_id, v in entries})

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
    """Keeps the presence entries of this process's sockets and pushes changes.

    Both directions are batched. Entries that sockets add, change or remove
    are written to Redis together every ``PUSH_DELAY`` seconds, with one
    announcement for all the topics they touched. Announcements from every
    process are gathered for ``PUSH_DELAY`` seconds too, and each topic is
    then rendered once. A socket is sent the rendered viewers only when they
    differ from what it was sent last, so a thousand pages reconnecting to
    one board cost a few renders and one frame each, not a frame per page
    per change.
    """

    def __init__(
        self,
        presence: Presence,
        bus: Bus,
        hub: Hub,
        render: PresenceRenderer,
        private_families: frozenset[str] = frozenset(),
    ) -> None:
        self.presence = presence
        # Families of topics that show no viewers, such as a user's own
        # notification stream: no entries are kept for them.
        self.private_families = private_families
        self.bus = bus
        self.hub = hub
        self.render = render
        # Entries to write: (topic, socket id) -> the viewer, or None to remove.
        self.writes: dict[tuple[str, str], Viewer | None] = {}
        self.write_task: asyncio.Task[None] | None = None
        self.pending: set[str] = set()
        self.flush_task: asyncio.Task[None] | None = None
        # Per topic, the viewers fragment last pushed and the sockets sent it.
        self.shown: dict[str, tuple[str, weakref.WeakSet[Client]]] = {}
        hub.presence_handler = self.push

    def shown_on(self, topic: str) -> bool:
        return topic.partition(":")[0] not in self.private_families

    async def joined(self, client: Client) -> None:
        if not client.shows_presence:
            return
        for topic, _ in client.subscriptions:
            if self.shown_on(topic):
                self.writes[(topic, client.socket_id)] = client.viewer
        self.schedule_writes()

    async def left(self, client: Client, topics: list[str]) -> None:
        if not client.shows_presence:
            return
        for topic in topics:
            if self.shown_on(topic):
                self.writes[(topic, client.socket_id)] = None
        self.schedule_writes()

    async def changed(self, client: Client, editing: str | None, typing: bool) -> None:
        client.viewer = msgspec.structs.replace(
            client.viewer, editing=editing, typing=typing
        )
        await self.joined(client)

    def schedule_writes(self) -> None:
        if self.write_task is None or self.write_task.done():
            self.write_task = asyncio.create_task(self.write_later())

    async def write_later(self) -> None:
        await asyncio.sleep(PUSH_DELAY)
        try:
            await self.write_pending()
        except Exception:
            logger.exception("presence write failed entries=%d", len(self.writes))

    async def write_pending(self) -> None:
        """Write the queued entries and announce the topics they belong to."""
        writes, self.writes = self.writes, {}
        if not writes:
            return
        await self.presence.apply(writes)
        await self.announce(sorted({topic for topic, _ in writes}))

    async def announce(self, topics: list[str]) -> None:
        if topics:
            await self.bus.publish([control_event(PRESENCE_CHANGED, topics)])

    async def push(self, topics: list[str]) -> None:
        """Send the current viewers of each topic to its local sockets, soon."""
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
                self.shown.pop(topic, None)
                continue
            viewers, _ = await self.presence.viewers(topic)
            text = self.render(topic, viewers)
            shown = self.shown.get(topic)
            if shown is None or shown[0] != text:
                shown = (text, weakref.WeakSet())
                self.shown[topic] = shown
            sent_to = shown[1]
            for clients in variants.values():
                for client in list(clients):
                    if client.shows_presence and client not in sent_to:
                        client.offer(text)
                        sent_to.add(client)

    async def close(self) -> None:
        """Remove this process's entries that are still queued, at shutdown."""
        for task in (self.write_task, self.flush_task):
            if task is not None:
                task.cancel()
        await self.write_pending()

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
            if client.shows_presence
            for topic, _ in client.subscriptions
            if self.shown_on(topic)
        ]
        await self.presence.refresh(entries)
        stale = []
        for topic in [topic for topic in self.hub.rooms if self.shown_on(topic)]:
            _, expired = await self.presence.viewers(topic)
            if expired:
                stale.append(topic)
        await self.announce(stale)


def control_event(kind: str, topics: list[str]) -> Event:
    return Event(id=0, kind=kind, topics=topics, record_type="", record_id=0)
