"""Route events from the bus to the sockets of this process.

A subscription is a topic ("pipeline:3") and a variant: the part of the
socket's view that changes what it must be sent, such as a board filter.
For each event the hub calls the topic's renderer once for every variant
that has sockets here, and queues the same text to all of them. Rendering
cost grows with the number of variants, not with the number of sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from realtime.messages import Event, Viewer, frame

logger = logging.getLogger(__name__)

# A renderer turns one event into the text each variant of a topic receives.
# ``cache`` is shared by every topic of the same event, so renderers of two
# topics can load the changed record once.
Renderer = Callable[[Event, str, set[str], dict[str, Any]], Awaitable[dict[str, str]]]
# A snapshot renders, for one topic and variant, everything a page shows of
# it: what a page gets when it is too far behind to replay events.
Snapshot = Callable[[str, str], Awaitable[str]]

SEND_QUEUE_SIZE = 256
SEND_TIMEOUT = 10.0
PARK_SECONDS = 0.5
# Close code 1013 ("try again later") makes the htmx ws extension reconnect.
CLOSE_TRY_AGAIN = 1013
CLOSE_SERVICE_RESTART = 1012
# The session ended (sign-out); pages go to the sign-in page, not reconnect.
CLOSE_SIGNED_OUT = 4401
# The user's roles or teams changed; pages reload, so that they subscribe
# again with the new rights.
CLOSE_ACCESS_CHANGED = 4403
# Control events travel on the bus like others but belong to no stream.
SESSION_ENDED = "session.ended"
PRESENCE_CHANGED = "presence.changed"
# {"user_id": ...}: close that user's sockets with CLOSE_ACCESS_CHANGED.
ACCESS_CHANGED = "access.changed"
# {"user_id": ...}: close that user's sockets with CLOSE_SIGNED_OUT.
USER_DEACTIVATED = "user.deactivated"


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(eq=False)
class Client:
    """One connected socket, its bounded send queue and its stream positions.

    ``sent`` holds, per stream, the last sequence number queued to the
    socket, so no event is sent twice. While ``held`` is a list, the client
    is being replayed to and live events wait there, to be sent after the
    replay in order.
    """

    socket: Socket
    user_id: int
    # A digest of the session the socket was opened with.
    session: str | None = None
    viewer: Viewer = field(default_factory=lambda: Viewer(user_id=0, name=""))
    # False for a page that follows its topics without showing who is on
    # them: it is neither listed as a viewer nor sent the viewers.
    shows_presence: bool = True
    socket_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    subscriptions: list[tuple[str, str]] = field(default_factory=list)
    queue: asyncio.Queue[str | None] = field(
        default_factory=lambda: asyncio.Queue(SEND_QUEUE_SIZE)
    )
    sent: dict[str, int] = field(default_factory=dict)
    held: list[tuple[str, int, str]] | None = None
    # Events that arrived ahead of a missing one, per stream, and since when.
    parked: dict[str, dict[int, str]] = field(default_factory=dict)
    parked_since: dict[str, float] = field(default_factory=dict)
    closing: bool = False
    close_code: int = 1000

    def offer_event(
        self, stream: str, seq: int, html: str, replayed: bool = False
    ) -> None:
        """Queue an event's frame in sequence order, once.

        Transactions commit in sequence order but publish after commit, so
        two changes made at the same moment can reach the bus swapped. An
        event that arrives ahead of a missing one waits up to
        ``PARK_SECONDS`` for it (see ``flush_parked``) rather than making
        the page ask for a replay.
        """
        if self.held is not None and not replayed:
            self.held.append((stream, seq, html))
            return
        last = self.sent.get(stream)
        if last is not None and seq <= last:
            return
        if last is not None and seq > last + 1 and not replayed:
            self.parked.setdefault(stream, {})[seq] = html
            self.parked_since.setdefault(stream, time.monotonic())
            return
        self.send_event(stream, seq, html)
        self.flush_parked(stream)

    def send_event(self, stream: str, seq: int, html: str) -> None:
        self.sent[stream] = seq
        self.offer(frame("seq", stream, seq, html))

    def flush_parked(self, stream: str, give_up: bool = False) -> None:
        """Send parked events that are next in line; with ``give_up``, send
        them all and let the page ask for whatever is still missing."""
        parked = self.parked.get(stream)
        while parked:
            following = self.sent.get(stream, 0) + 1
            if following in parked:
                self.send_event(stream, following, parked.pop(following))
            elif give_up:
                first = min(parked)
                self.send_event(stream, first, parked.pop(first))
            else:
                break
        if not parked:
            self.parked.pop(stream, None)
            self.parked_since.pop(stream, None)

    def flush_stale(self, now: float) -> None:
        for stream, since in list(self.parked_since.items()):
            if now - since >= PARK_SECONDS:
                self.flush_parked(stream, give_up=True)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    def offer_snapshot(self, stream: str, seq: int, html: str) -> None:
        self.sent[stream] = seq
        self.offer(frame("snap", stream, seq, html))

    def release(self) -> None:
        """Send the live events that arrived during a replay, skipping repeats."""
        held, self.held = self.held or [], None
        for stream, seq, html in sorted(held, key=lambda item: (item[0], item[1])):
            self.offer_event(stream, seq, html)

    def offer(self, text: str) -> None:
        """Queue ``text``; a client whose queue is full is disconnected.

        A full queue means the client stopped reading. Dropping it keeps
        one slow reader from holding memory or delaying everyone else, and
        on reconnect it resumes from its last sequence numbers.
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
        """Send queued messages until stopped, then close the socket.

        A send that does not complete within ``SEND_TIMEOUT`` seconds means
        the client stopped reading while the network buffers filled up. The
        client is cut off and resumes from its last sequence numbers when it
        reconnects.
        """
        while True:
            text = await self.queue.get()
            if text is None:
                break
            try:
                await asyncio.wait_for(self.socket.send_text(text), SEND_TIMEOUT)
            except TimeoutError:
                logger.warning("socket send timed out user_id=%s", self.user_id)
                self.closing = True
                self.close_code = CLOSE_TRY_AGAIN
                break
        await self.socket.close(code=self.close_code)


class Hub:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, set[Client]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.renderers: dict[str, Renderer] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.clients: set[Client] = set()
        # Set by the presence tracker: pushes the viewers of some topics.
        self.presence_handler: Callable[[list[str]], Awaitable[None]] | None = None

    def register(
        self, family: str, renderer: Renderer, snapshot: Snapshot | None = None
    ) -> None:
        """Render events of topics named ``family`` or ``family:<id>``."""
        self.renderers[family] = renderer
        if snapshot is not None:
            self.snapshots[family] = snapshot

    def renderer_for(self, topic: str) -> Renderer | None:
        return self.renderers.get(topic.partition(":")[0])

    def snapshot_for(self, topic: str) -> Snapshot | None:
        return self.snapshots.get(topic.partition(":")[0])

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

    async def flush_parked_forever(self, interval: float = 0.1) -> None:
        """Send events that waited too long for a missing one to arrive."""
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for client in list(self.clients):
                if client.parked_since:
                    client.flush_stale(now)

    def disconnect_user(self, user_id: int, code: int = 1000) -> None:
        for client in [c for c in self.clients if c.user_id == user_id]:
            client.stop(code)

    def close_all(self, code: int = CLOSE_SERVICE_RESTART) -> None:
        for client in list(self.clients):
            client.stop(code)

    def end_session(self, session: str) -> None:
        for client in [c for c in self.clients if c.session == session]:
            client.stop(CLOSE_SIGNED_OUT)

    async def dispatch(self, event: Event) -> int:
        """Render ``event`` for each local variant and queue it; return the sends."""
        if event.kind == SESSION_ENDED:
            self.end_session(str(event.changes.get("session")))
            return 0
        if event.kind == PRESENCE_CHANGED:
            if self.presence_handler is not None:
                await self.presence_handler(event.topics)
            return 0
        if event.kind in (ACCESS_CHANGED, USER_DEACTIVATED):
            code = (
                CLOSE_ACCESS_CHANGED
                if event.kind == ACCESS_CHANGED
                else CLOSE_SIGNED_OUT
            )
            user_id = event.changes.get("user_id")
            if isinstance(user_id, int):
                self.disconnect_user(user_id, code)
            return 0

        cache: dict[str, Any] = {}
        sent = 0
        # An event may be numbered in streams beyond its topics, such as the
        # API's stream of every record change.
        streams = [*event.topics, *(s for s in event.seqs if s not in event.topics)]
        for topic in streams:
            variants = self.rooms.get(topic)
            if not variants:
                continue

            renderer = self.renderer_for(topic)
            if renderer is None:
                logger.error("no renderer for topic=%s event_id=%s", topic, event.id)
                continue

            seq = event.seqs.get(topic, 0)
            try:
                fragments = await renderer(event, topic, set(variants), cache)
            except Exception:
                # One topic's failure must not cost the other topics their
                # update. Its sockets miss this event and catch up from the
                # log when their next event shows the gap.
                logger.exception(
                    "rendering failed topic=%s event_id=%s record=%s:%s",
                    topic,
                    event.id,
                    event.record_type,
                    event.record_id,
                )
                continue
            # A variant the renderer left out still gets the sequence number,
            # with no content, so that its pages see no gap.
            for variant, members in list(variants.items()):
                text = fragments.get(variant, "")
                for client in list(members):
                    client.offer_event(topic, seq, text)
                    sent += 1
        return sent
