"""Trivial round trips measured in the same run, to scale the main figures by."""

from __future__ import annotations

import time

from redis.asyncio import Redis

RECEIVE_TIMEOUT = 5.0


async def redis_round_trips(
    redis_url: str, channel: str, warmup: int, count: int
) -> list[float]:
    """Time PUBLISH on one connection to receipt on a subscribed one, in ms."""
    publisher = Redis.from_url(redis_url)
    subscriber = Redis.from_url(redis_url)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    samples = []
    try:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=RECEIVE_TIMEOUT)
        for number in range(warmup + count):
            started = time.perf_counter_ns()
            await publisher.publish(channel, b"x" * 64)
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=RECEIVE_TIMEOUT
            )
            if message is None:
                raise TimeoutError(
                    f"no message on {channel} within {RECEIVE_TIMEOUT} s"
                )
            if number >= warmup:
                samples.append((time.perf_counter_ns() - started) / 1e6)
    finally:
        await pubsub.aclose()
        await publisher.aclose()
        await subscriber.aclose()
    return samples
