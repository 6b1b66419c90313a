"""What a real arq worker logs at INFO: failed jobs, not routine cron runs
or health checks."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from typing import Any

import pytest
from arq import cron, func
from arq.worker import Worker

from workers.connection import open_queue, queue_name
from workers.logs import (
    ARQ_LOGGER,
    FINISH_FORMAT,
    HEALTH_FORMAT,
    quiet_routine_cron_logs,
)


async def routine_check(ctx: dict[str, Any]) -> int:
    return 2


async def broken_job(ctx: dict[str, Any], record_id: int) -> None:
    raise RuntimeError(f"record {record_id} could not be read")


async def test_routine_cron_quiet_failure_logged(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"{redis_prefix}logs-{uuid.uuid4().hex[:8]}:"
    cron_name = f"{prefix}cron:routine_check"
    queue = await open_queue(os.environ["REDIS_URL"], prefix)
    installed = quiet_routine_cron_logs([cron_name])
    caplog.set_level(logging.INFO)
    # DEBUG records of arq are captured too, to check which level each got.
    caplog.set_level(logging.DEBUG, logger=ARQ_LOGGER)
    try:
        job = await queue.enqueue_job("broken_job", 42, _queue_name=queue_name(prefix))
        assert job is not None
        # Scheduled yearly, so that only the run queued below falls in the test.
        routine = cron(
            routine_check,
            name=cron_name,
            month=1,
            day=1,
            hour=0,
            minute=0,
            second=0,
            unique=True,
        )
        now = dt.datetime.now(dt.UTC)
        routine.next_run = now
        worker = Worker(
            functions=[func(broken_job, name="broken_job")],
            cron_jobs=[routine],
            queue_name=queue_name(prefix),
            redis_pool=queue,
            burst=True,
            handle_signals=False,
            poll_delay=0.05,
            health_check_interval=0,
        )
        # arq logs a health line only when the job counts changed since the
        # last check, so record them before the jobs run and again after.
        await worker.record_health()
        # Queue the cron run first: in burst mode the worker stops once the
        # queue is empty, before its own schedule would queue one.
        await worker.run_cron(now, 0.5)
        await worker.main()
        await worker.record_health()
    finally:
        logging.getLogger(ARQ_LOGGER).removeFilter(installed)
        keys = [key async for key in queue.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await queue.delete(*keys)
        await queue.aclose()

    arq_lines = [record for record in caplog.records if record.name == ARQ_LOGGER]
    # The worker's first line lists its functions, the cron job among them.
    about_cron = [
        record
        for record in arq_lines
        if record.levelno >= logging.INFO
        and cron_name in record.getMessage()
        and not record.getMessage().startswith("Starting worker")
    ]
    health = [record for record in arq_lines if record.msg == HEALTH_FORMAT]
    failures = [record for record in arq_lines if record.levelno >= logging.ERROR]

    assert worker.jobs_complete == 1
    assert worker.jobs_failed == 1
    assert about_cron == []
    assert health != []
    assert {record.levelno for record in health} == {logging.DEBUG}
    assert len(failures) == 1
    assert job.job_id in failures[0].getMessage()
    assert "broken_job" in failures[0].getMessage()
    assert "record 42 could not be read" in failures[0].getMessage()


def finish_record(name: str, seconds: float) -> logging.LogRecord:
    return logging.LogRecord(
        ARQ_LOGGER, logging.INFO, __file__, 1, FINISH_FORMAT, (seconds, name, "2"), None
    )


def test_slow_cron_run_stays_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    installed = quiet_routine_cron_logs(["crm:cron:slow"])
    try:
        quick = finish_record("crm:cron:slow", 0.2)
        slow = finish_record("crm:cron:slow", 42.0)
        other = finish_record("import-7:import_files_job", 0.2)

        assert installed.filter(quick) is False
        assert quick.levelno == logging.DEBUG
        assert installed.filter(slow) is True
        assert slow.levelno == logging.INFO
        assert installed.filter(other) is True
        assert other.levelno == logging.INFO
        assert installed.runs["crm:cron:slow"] == 1
    finally:
        logging.getLogger(ARQ_LOGGER).removeFilter(installed)


def test_health_line_is_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    installed = quiet_routine_cron_logs([])
    try:
        health = logging.LogRecord(
            ARQ_LOGGER,
            logging.INFO,
            __file__,
            1,
            HEALTH_FORMAT,
            ("Dec-05 02:21:59 j_complete=740 j_failed=0 queued=5",),
            None,
        )

        assert installed.filter(health) is False
        assert health.levelno == logging.DEBUG
        assert health.levelname == "DEBUG"
    finally:
        logging.getLogger(ARQ_LOGGER).removeFilter(installed)
