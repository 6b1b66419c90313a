"""The Redis pub/sub channel that carries events between web processes.

Each process keeps one subscription to one channel for its whole life, and
routes events to its own sockets in memory. Sockets never subscribe in
Redis, so connecting thousands of them at once costs Redis nothing and
cannot race a subscribe against a publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.messages import Event, decode, encode

logger = logging.getLogger(__name__)

RECONNECT_DELAY = 0.5


class Bus:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.channel = f"{prefix}events"

    async def publish(self, events: list[Event]) -> None:
        if not events:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(self.channel, encode(event))
            await pipe.execute()

    async def listen(self, ready: asyncio.Event | None = None) -> AsyncIterator[Event]:
        """Yield every event published on the channel, reconnecting after errors.

        ``ready`` is set once the subscription is confirmed by Redis, so a
        caller can wait for it before accepting sockets.
        """
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # The confirmation arrives as the first message.
                await pubsub.get_message(timeout=5)
                if ready is not None:
                    ready.set()
                logger.info("bus subscribed channel=%s", self.channel)

                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    try:
                        yield decode(message["data"])
                    except ValueError:
                        logger.exception("bus dropped an undecodable message")
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                logger.warning(
                    "bus lost its Redis connection channel=%s error=%s",
                    self.channel,
                    error,
                )
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                await pubsub.aclose()


async def consume(
    bus: Bus,
    handle: Callable[[Event], Awaitable[object]],
    ready: asyncio.Event | None = None,
) -> None:
    """Pass each event to ``handle`` in order; a failing handler is logged."""
    async for event in bus.listen(ready):
        try:
            await handle(event)
        except Exception:
            logger.exception(
                "event handler failed event_id=%s kind=%s record=%s:%s",
                event.id,
                event.kind,
                event.record_type,
                event.record_id,
            )
