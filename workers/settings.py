"""The arq worker: its queue, its tasks and its connections."""

from __future__ import annotations

import os
from typing import Any

from arq import cron
from redis.asyncio import Redis

from app.config import Settings
from app.events.service import set_bus
from app.logs import configure_logging
from app.piccolo_conf import DB
from realtime.bus import Bus
from workers.connection import queue_name, redis_settings
from workers.imports import import_files
from workers.maintenance import prune_old_events


async def startup(ctx: dict[str, Any]) -> None:
    configure_logging()
    settings = Settings.from_env()
    ctx["redis_client"] = Redis.from_url(settings.redis_url)
    set_bus(Bus(ctx["redis_client"], settings.redis_prefix))
    await DB.start_connection_pool(min_size=1, max_size=5)


async def shutdown(ctx: dict[str, Any]) -> None:
    set_bus(None)
    await DB.close_connection_pool()
    await ctx["redis_client"].aclose()


class WorkerSettings:
    functions = [import_files, prune_old_events]
    cron_jobs = [cron(prune_old_events, hour=3, minute=17, unique=True)]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    queue_name = queue_name(os.environ.get("REDIS_PREFIX", "crm:"))
    max_jobs = 4
    job_timeout = 3600
    health_check_interval = 30
