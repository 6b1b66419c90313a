"""Jobs run by a real arq worker process, and the worker's arq key space."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid

from arq.worker import Worker

from app.events.service import change_set
from app.events.tables import Event
from app.webhooks.tables import OutboxMessage
from tests.servers import worker_process
from workers.connection import import_job_id, open_queue, queue_name


async def test_worker_prunes_events_past_retention() -> None:
    stream = f"tickets-{uuid.uuid4().hex[:8]}"
    async with change_set() as changes:
        changes.add("ticket.updated", "ticket", 1, [stream])
        changes.add("ticket.updated", "ticket", 2, [stream])
    old, recent = (event.id for event in changes.events)
    await Event.raw(
        "UPDATE event SET created_at = now() - interval '9 days' WHERE id = {}", old
    )
    outbox = {}
    for name, status, age in [
        ("old-delivered", "delivered", 40),
        ("old-pending", "pending", 40),
        ("recent-failed", "failed", 2),
    ]:
        message = OutboxMessage(
            kind="notify",
            message_id=f"msg_{name}_{uuid.uuid4().hex[:8]}",
            payload="{}",
            status=status,
            finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=age),
        )
        await message.save()
        outbox[name] = message.id

    queue = await open_queue(os.environ["REDIS_URL"], os.environ["REDIS_PREFIX"])
    with worker_process({"EVENT_RETENTION_DAYS": "7"}):
        job = await queue.enqueue_job("prune_old_events")
        assert job is not None
        deleted = await job.result(timeout=30)
    await queue.aclose()

    assert deleted >= 1
    assert not await Event.exists().where(Event.id == old)
    assert await Event.exists().where(Event.id == recent)
    kept = await OutboxMessage.select(OutboxMessage.id).where(
        OutboxMessage.id.is_in(list(outbox.values()))
    )
    # Pending messages stay whatever their age; finished ones for 30 days.
    assert {row["id"] for row in kept} == {
        outbox["old-pending"],
        outbox["recent-failed"],
    }
    await asyncio.sleep(0)


async def test_installations_keep_separate_job_keys(redis_prefix: str) -> None:
    first = await open_queue(os.environ["REDIS_URL"], f"{redis_prefix}one:")
    second = await open_queue(os.environ["REDIS_URL"], f"{redis_prefix}two:")
    try:
        # Both installations have an import job 1, with the same fixed id.
        jobs = [
            await queue.enqueue_job(
                "import_files", 1, "tickets", [], _job_id=import_job_id(1)
            )
            for queue in (first, second)
        ]
        assert all(job is not None for job in jobs)
        assert [job.job_id for job in jobs if job] == [
            f"{redis_prefix}one:import:1",
            f"{redis_prefix}two:import:1",
        ]
        assert await first.exists(f"arq:job:{redis_prefix}one:import:1")
        assert await first.exists(f"arq:job:{redis_prefix}two:import:1")
        assert await first.zcard(queue_name(f"{redis_prefix}one:")) == 1
        assert await first.zcard(queue_name(f"{redis_prefix}two:")) == 1

        # A job that is still in the installation's queue is not queued twice.
        again = await first.enqueue_job(
            "import_files", 1, "tickets", [], _job_id=import_job_id(1)
        )
        assert again is None

        # A random id also starts with the prefix.
        random_job = await second.enqueue_job("prune_old_events")
        assert random_job is not None
        assert random_job.job_id.startswith(f"{redis_prefix}two:")
    finally:
        await delete_arq_keys(first, redis_prefix)
        await first.aclose()
        await second.aclose()


async def test_installations_each_run_their_cron_jobs(redis_prefix: str) -> None:
    """arq's id of one run of a unique cron job is its name and time, so
    installations whose cron jobs had the same name ran only one of them."""
    # Imported here: the worker's settings open the database engine, which
    # must wait for the test run's database.
    from workers.settings import scheduled_jobs

    prefixes = [f"{redis_prefix}cron-one:", f"{redis_prefix}cron-two:"]
    queues = [await open_queue(os.environ["REDIS_URL"], p) for p in prefixes]
    now = dt.datetime.now(dt.UTC)
    try:
        for prefix, queue in zip(prefixes, queues, strict=True):
            jobs = scheduled_jobs(prefix)
            for job in jobs:
                job.next_run = now
            worker = Worker(
                cron_jobs=jobs,
                queue_name=queue_name(prefix),
                redis_pool=queue,
                handle_signals=False,
            )
            await worker.run_cron(now, 0.5)

        for prefix, queue in zip(prefixes, queues, strict=True):
            queued = await queue.queued_jobs()
            names = sorted(job.function for job in queued)
            expected = sorted(job.name for job in scheduled_jobs(prefix))
            assert names == expected
            assert f"{prefix}cron:prune_old_events" in names
            assert f"{prefix}cron:recover_imports" in names
            assert all(str(job.job_id).startswith(prefix) for job in queued)
    finally:
        await delete_arq_keys(queues[0], redis_prefix)
        for queue in queues:
            await queue.aclose()


async def delete_arq_keys(redis: object, prefix: str) -> None:
    """Delete arq's keys of this test run, which start with ``arq:``, not the prefix."""
    from redis.asyncio import Redis

    assert isinstance(redis, Redis)
    keys = [key async for key in redis.scan_iter(match=f"arq:*{prefix}*", count=1000)]
    keys += [key async for key in redis.scan_iter(match=f"{prefix}*arq:queue")]
    if keys:
        await redis.delete(*keys)
