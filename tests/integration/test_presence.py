"""Presence entries in Redis: refreshed while sockets live, dropped when stale."""

from __future__ import annotations

import os
import time
import uuid

import msgspec
from redis.asyncio import Redis

from realtime.messages import Viewer
from realtime.presence import EXPIRY, Presence, encode_viewer


async def test_viewers_are_one_per_user_sorted_by_name() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"deal:{uuid.uuid4().hex[:8]}"

    await presence.set(topic, "tab-1", Viewer(user_id=2, name="Zoe"))
    await presence.set(topic, "tab-2", Viewer(user_id=1, name="Adam"))
    await presence.set(topic, "tab-3", Viewer(user_id=2, name="Zoe", editing="amount"))

    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Adam", "Zoe"]
    assert viewers[1].editing == "amount"
    assert not expired
    await redis.delete(presence.key(topic))
    await redis.aclose()


async def test_entries_of_a_dead_process_expire() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"pipeline:{uuid.uuid4().hex[:8]}"
    await presence.set(topic, "alive", Viewer(user_id=1, name="Alive"))
    # What a process that stopped refreshing leaves behind.
    stale = msgspec.structs.replace(
        Viewer(user_id=2, name="Gone"), seen=time.time() - EXPIRY - 1
    )
    await redis.hset(presence.key(topic), "dead-process-tab", encode_viewer(stale))

    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Alive"]
    assert expired
    assert await redis.hkeys(presence.key(topic)) == [b"alive"]
    await redis.delete(presence.key(topic))
    await redis.aclose()


async def test_refresh_keeps_live_entries_fresh() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"ticket:{uuid.uuid4().hex[:8]}"
    old = msgspec.structs.replace(
        Viewer(user_id=3, name="Kept"), seen=time.time() - EXPIRY - 1
    )
    await redis.hset(presence.key(topic), "tab", encode_viewer(old))

    await presence.refresh([(topic, "tab", Viewer(user_id=3, name="Kept"))])
    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Kept"]
    assert not expired
    await redis.delete(presence.key(topic))
    await redis.aclose()
