"""Connection settings the web and the worker share for the arq queue."""

from __future__ import annotations

from arq.connections import RedisSettings


def queue_name(prefix: str) -> str:
    return f"{prefix}arq:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)
