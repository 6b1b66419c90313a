"""The users with a socket open now, read from the presence hashes.

Presence (``realtime.presence``) keeps one Redis hash per topic with an
entry per open socket, restamped every ``HEARTBEAT`` seconds. A user is
online when any entry of theirs is younger than ``EXPIRY``.
"""

from __future__ import annotations

import time

import msgspec
from redis.asyncio import Redis

from app.config import Settings
from realtime.messages import Viewer
from realtime.presence import EXPIRY

decode_viewer = msgspec.json.Decoder(Viewer).decode


async def online_user_ids() -> set[int]:
    """Return the ids of users with a live socket on any topic.

    NOTE: this scans every presence hash, one round trip per topic with
    viewers, which is fine for assignment but not for a hot path.
    """
    settings = Settings.from_env()
    cutoff = time.time() - EXPIRY
    online: set[int] = set()
    pattern = f"{settings.redis_prefix}presence:*"
    async with Redis.from_url(settings.redis_url) as redis:
        async for key in redis.scan_iter(match=pattern, count=500):
            entries: dict[bytes, bytes] = await redis.hgetall(key)  # type: ignore[misc]
            for raw in entries.values():
                viewer = decode_viewer(raw)
                if viewer.seen >= cutoff:
                    online.add(viewer.user_id)
    return online
