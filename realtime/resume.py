"""Bring a reconnecting socket up to date, then let live events through.

A page sends the last sequence number it applied for each stream. The
socket is held (live events wait in order) while the events after those
numbers are read from the event log and sent; then the held events follow,
minus any the replay already covered. A stream too far behind, beyond the
replay limit or the retention window, gets a fresh render instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from realtime.hub import Client, Hub, Renderer, Snapshot
from realtime.messages import Event

logger = logging.getLogger(__name__)

# Reads up to ``limit`` events of a stream after a sequence number; the flag
# is False when the stream cannot be replayed from there.
EventSource = Callable[[str, int, int], Awaitable[tuple[list[Event], bool]]]
PositionSource = Callable[[list[str]], Awaitable[dict[str, int]]]


async def catch_up(
    hub: Hub,
    client: Client,
    positions: dict[str, int],
    events_after: EventSource,
    stream_positions: PositionSource,
    limit: int,
) -> None:
    """Replay what ``client`` missed on each subscribed stream in ``positions``."""
    client.hold()
    try:
        for topic, variant in list(client.subscriptions):
            if topic not in positions:
                continue
            after = positions[topic]
            client.sent[topic] = after
            events, complete = await events_after(topic, after, limit)
            if complete:
                await replay(hub, client, topic, variant, events)
            else:
                await send_snapshot(hub, client, topic, variant, stream_positions)
    finally:
        client.release()


async def replay(
    hub: Hub, client: Client, topic: str, variant: str, events: list[Event]
) -> None:
    renderer = hub.renderer_for(topic)
    if renderer is None:
        return
    for event in events:
        html = await rendered_for_replay(renderer, event, topic, variant)
        client.offer_event(topic, event.seqs[topic], html, replayed=True)
    if events:
        logger.debug(
            "replayed events user_id=%s topic=%s count=%d",
            client.user_id,
            topic,
            len(events),
        )


# Fragments rendered for replays, shared by every socket that replays the
# same event with the same filter: after a restart, thousands of pages ask
# for the same few events within seconds.
REPLAY_CACHE_SECONDS = 2.0
REPLAY_CACHE_SIZE = 4096
_replayed: OrderedDict[tuple[int, str, str], tuple[float, str]] = OrderedDict()
_rendering: dict[tuple[int, str, str], asyncio.Future[str]] = {}


async def rendered_for_replay(
    renderer: Renderer, event: Event, topic: str, variant: str
) -> str:
    """Render an event for one filter once, however many sockets replay it."""
    key = (event.id, topic, variant)
    now = time.monotonic()
    cached = _replayed.get(key)
    if cached is not None and now - cached[0] < REPLAY_CACHE_SECONDS:
        return cached[1]
    pending = _rendering.get(key)
    if pending is not None:
        return await asyncio.shield(pending)

    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    _rendering[key] = future
    try:
        fragments = await renderer(event, topic, {variant}, {})
    except Exception as error:
        future.set_exception(error)
        # Marks the error as seen; waiters, if any, still receive it.
        future.exception()
        raise
    finally:
        _rendering.pop(key, None)
    html = fragments.get(variant, "")
    future.set_result(html)

    _replayed[key] = (now, html)
    _replayed.move_to_end(key)
    while len(_replayed) > REPLAY_CACHE_SIZE:
        _replayed.popitem(last=False)
    return html


async def send_snapshot(
    hub: Hub,
    client: Client,
    topic: str,
    variant: str,
    stream_positions: PositionSource,
) -> None:
    snapshot = hub.snapshot_for(topic)
    if snapshot is None:
        logger.error("no snapshot for topic=%s user_id=%s", topic, client.user_id)
        return
    key = (topic, variant)
    pending = _snapshots.get(key)
    if pending is None:
        pending = asyncio.ensure_future(
            render_snapshot(snapshot, topic, variant, stream_positions)
        )
        _snapshots[key] = pending
        pending.add_done_callback(lambda _: _snapshots.pop(key, None))
    # Sockets that ask at the same moment share one render.
    position, html = await asyncio.shield(pending)
    client.offer_snapshot(topic, position, html)
    logger.info("sent fresh render user_id=%s topic=%s", client.user_id, topic)


_snapshots: dict[tuple[str, str], asyncio.Future[tuple[int, str]]] = {}


async def render_snapshot(
    snapshot: Snapshot, topic: str, variant: str, stream_positions: PositionSource
) -> tuple[int, str]:
    # Read the position before rendering, as pages do: an event that commits
    # in between is in the render and also sent live, never in neither.
    position = (await stream_positions([topic]))[topic]
    return position, await snapshot(topic, variant)


async def repair_behind(
    hub: Hub,
    previous: dict[str, int],
    events_after: EventSource,
    stream_positions: PositionSource,
    limit: int,
) -> dict[str, int]:
    """Catch up every local socket still behind the positions of the last check.

    Events published while this process was cut off from Redis never reach
    its sockets live, and a page learns of an event it never got only when a
    later one follows. Comparing against the previous check's
    positions, rather than the current ones, leaves alone events that are
    simply still on their way. Returns the current positions for next time.
    """
    topics = sorted(hub.rooms)
    current = await stream_positions(topics) if topics else {}
    for client in list(hub.clients):
        behind = {
            topic: client.sent.get(topic, 0)
            for topic, _ in client.subscriptions
            if topic in client.sent and client.sent[topic] < previous.get(topic, 0)
        }
        if behind and client.held is None and not client.closing:
            logger.info(
                "repairing missed events user_id=%s streams=%s", client.user_id, behind
            )
            await catch_up(hub, client, behind, events_after, stream_positions, limit)
    return current
