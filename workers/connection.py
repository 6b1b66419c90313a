"""Connection settings the web and the worker share for the arq queue.

Each installation sharing a Redis server gets its own arq key space from
REDIS_PREFIX. arq 0.28 names only the queue (and its health check key,
``<queue>:health-check``) after a setting. Every other key it writes is a
fixed constant followed by the job id: ``arq:job:<id>``, ``arq:in-progress:<id>``,
``arq:retry:<id>`` and ``arq:result:<id>``. So every job id starts with the
prefix, which puts those keys under ``arq:job:<prefix>`` and so on.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

# NOTE: arq cannot prefix these parts of its key space. The ``arq:`` at the
# start of the keys above is fixed. ``arq:abort``, the sorted set of jobs to
# abort, is one key for all installations, but Switchboard never aborts
# jobs, and the entries in it are prefixed job ids. ``ArqRedis.all_job_results``
# lists the results of every installation, because it scans ``arq:result:*``.


def queue_name(prefix: str) -> str:
    return f"{prefix}arq:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def import_job_id(job_id: int) -> str:
    """Return the arq job id of an import job row, before the prefix.

    With one id per row, a job that is still in arq's queue is never queued
    twice.
    """
    return f"import:{job_id}"


class Queue(ArqRedis):
    """An arq connection whose job ids start with the installation's prefix.

    ``enqueue_job`` takes ``_job_id`` without the prefix, and a new random
    id when it is omitted. The returned ``Job`` has the full id.
    """

    job_id_prefix: str = ""

    async def enqueue_job(
        self, function: str, *args: Any, _job_id: str | None = None, **kwargs: Any
    ) -> Job | None:
        job_id = self.job_id_prefix + (_job_id or uuid4().hex)
        return await super().enqueue_job(function, *args, _job_id=job_id, **kwargs)


async def open_queue(url: str, prefix: str) -> Queue:
    """Connect to the arq queue of the installation with REDIS_PREFIX ``prefix``.

    Raises redis-py's ``ConnectionError`` when Redis cannot be reached.
    """
    queue = Queue.from_url(url)
    queue.default_queue_name = queue_name(prefix)
    queue.job_id_prefix = prefix
    try:
        await queue.ping()
    except BaseException:
        await queue.aclose()
        raise
    return queue
