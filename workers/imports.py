"""Imports started from the web, run in the worker with live progress.

A run that its worker stops is run again from the start by the next worker.
Imports are keyed upserts in batches, so the rerun updates what the stopped
run wrote. The uploaded files stay until the job is done or has failed for
good.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import asyncpg
from arq.constants import in_progress_key_prefix
from arq.worker import Function, func
from redis.exceptions import RedisError

from app.imports.heartbeat import (
    MAX_LOST_RUNS,
    abandoned_jobs,
    claim_job,
    count_lost_run,
    record_heartbeat,
    record_progress,
    release_job,
)
from app.imports.jobs import finish_job
from app.imports.service import run_import, upload_folder
from workers.connection import import_job_id

logger = logging.getLogger(__name__)

# Seconds an import may run before it fails.
IMPORT_TIMEOUT = 3600
DEFAULT_STALE_SECONDS = 60
# Seconds the worker waits for the database to record a clean stop.
RELEASE_TIMEOUT = 10


def stale_seconds() -> float:
    """Seconds without a heartbeat after which a run counts as lost.

    Read from IMPORT_STALE_SECONDS (at least 2). A killed worker's import
    starts again on another worker about this long after it died.
    """
    value = os.environ.get("IMPORT_STALE_SECONDS", str(DEFAULT_STALE_SECONDS))
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"IMPORT_STALE_SECONDS={value!r} is not a number") from None
    if seconds < 2:
        raise ValueError(f"IMPORT_STALE_SECONDS={value!r} must be 2 or more")
    return seconds


def remove_uploads(paths: list[str]) -> None:
    """Delete the uploaded copies once imported; the database has the data."""
    for path in map(Path, paths):
        if path.is_dir() and path.parent.name == "uploads":
            shutil.rmtree(path, ignore_errors=True)


def job_error(reason: str) -> list[dict[str, Any]]:
    return [{"file": "", "row": 0, "column": "", "value": "", "reason": reason}]


async def import_files(
    ctx: dict[str, Any], job_id: int, source: str, paths: list[str]
) -> dict[str, Any] | None:
    claimed = await claim_job(job_id)
    if claimed is None:
        logger.warning("import skipped, job finished or not found job_id=%s", job_id)
        return None

    user_id = claimed.user_id
    logger.info(
        "import started job_id=%s user_id=%s source=%s try=%s",
        job_id,
        user_id,
        source,
        ctx.get("job_try", 1),
    )
    if claimed.resumed:
        logger.warning(
            "import running again, its previous worker stopped "
            "job_id=%s user_id=%s lost_runs=%d",
            job_id,
            user_id,
            claimed.lost_runs,
        )
    if claimed.lost_runs >= MAX_LOST_RUNS:
        reason = (
            f"the worker stopped {claimed.lost_runs} times while running this "
            "import, so it was not run again. Split the files and import them "
            "one at a time."
        )
        logger.error(
            "import failed, too many lost runs job_id=%s user_id=%s lost_runs=%d",
            job_id,
            user_id,
            claimed.lost_runs,
        )
        await finish_job(job_id, "failed", 0, job_error(reason))
        remove_uploads(paths)
        return None

    async def progress(done: int, total: int) -> None:
        await record_progress(job_id, done, total)

    keep_alive = asyncio.create_task(keep_job_alive(ctx, job_id, stale_seconds()))
    deadline = asyncio.timeout(IMPORT_TIMEOUT)
    try:
        async with deadline:
            report = await run_import(
                source,
                [Path(path) for path in paths],
                user_id=user_id,
                job_id=job_id,
                on_progress=progress,
            )
    except asyncio.CancelledError:
        # arq cancels running jobs when the worker gets SIGTERM or SIGINT,
        # and leaves them queued for the next worker.
        logger.info(
            "import stopped with its worker, queued to run again job_id=%s user_id=%s",
            job_id,
            user_id,
        )
        await release_on_stop(job_id, user_id)
        raise
    except Exception as error:
        if isinstance(error, TimeoutError) and deadline.expired():
            reason = f"the import timed out after {IMPORT_TIMEOUT} seconds"
            logger.error(
                "import timed out job_id=%s user_id=%s after=%ds",
                job_id,
                user_id,
                IMPORT_TIMEOUT,
            )
        else:
            reason = str(error)
            logger.exception(
                "import failed job_id=%s user_id=%s source=%s",
                job_id,
                user_id,
                source,
            )
        # When this write fails too, the files stay and the job stays
        # unfinished, so the sweep for abandoned jobs runs it again.
        await finish_job(job_id, "failed", 0, job_error(reason))
        remove_uploads(paths)
        raise
    finally:
        keep_alive.cancel()
        await asyncio.gather(keep_alive, return_exceptions=True)

    skipped = [
        {
            "file": name,
            "row": 0,
            "column": "",
            "value": "",
            "reason": "not in a known format, skipped",
        }
        for name in report.ignored_files
    ]
    errors = skipped + [error.as_dict() for error in report.errors]
    await finish_job(job_id, "done", report.rows_failed, errors)
    remove_uploads(paths)
    logger.info(
        "import finished job_id=%s user_id=%s rows=%s failed=%s",
        job_id,
        user_id,
        report.rows_total,
        report.rows_failed,
    )
    return {"rows_total": report.rows_total, "rows_failed": report.rows_failed}


# arq counts every start of a job, clean stops included, while the job row's
# lost_runs decides when an import fails for good. arq's limit is a backstop.
# The result is not kept, because the job row has it and because arq rejects
# a job id that has a kept result, which would stop the sweep from queuing it.
import_files_job: Function = func(
    import_files, timeout=IMPORT_TIMEOUT + 60, keep_result=0, max_tries=20
)


async def release_on_stop(job_id: int, user_id: int | None) -> None:
    try:
        await asyncio.wait_for(release_job(job_id), RELEASE_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        # The job stays "running" until its heartbeat is old; then the next
        # run counts this one as lost.
        logger.warning(
            "import stop not recorded job_id=%s user_id=%s error=%r",
            job_id,
            user_id,
            error,
        )


async def keep_job_alive(ctx: dict[str, Any], job_id: int, stale: float) -> None:
    """Write the job's heartbeat and extend arq's in-progress key, every stale / 4 s.

    arq marks a running job with an in-progress key that lasts as long as the
    job timeout plus 10 s, and skips the job while the key exists. Keeping the
    key only ``stale`` seconds ahead lets another worker take over the job
    that long after this worker was killed, instead of an hour.
    """
    redis = ctx.get("redis")
    arq_job_id = ctx.get("job_id")
    failures = 0
    while True:
        try:
            if redis is not None and arq_job_id:
                await redis.pexpire(
                    in_progress_key_prefix + arq_job_id, int(stale * 1000)
                )
            await record_heartbeat(job_id)
        except (RedisError, OSError, asyncpg.PostgresError) as error:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                logger.warning(
                    "import heartbeat failed job_id=%s failures=%d error=%r",
                    job_id,
                    failures,
                    error,
                )
        else:
            failures = 0
        await asyncio.sleep(stale / 4)


async def recover_imports(ctx: dict[str, Any]) -> int:
    """Queue the unfinished imports that the queue lost, and return how many.

    An unfinished import with an old heartbeat may still wait in the queue,
    or wait for the in-progress key of its killed worker to expire. Otherwise
    Redis lost it: Redis lost its data, the job expired there, or the web
    could not queue it. Each job row has one fixed arq id, so ``enqueue_job``
    queues only the lost jobs. Each of those counts as a lost run.
    """
    settings = ctx["settings"]
    queued = 0
    for job in await abandoned_jobs(stale_seconds()):
        folder = upload_folder(settings.data_dir, job.job_id)
        arq_job = await ctx["redis"].enqueue_job(
            "import_files",
            job.job_id,
            job.source,
            [str(folder)],
            _job_id=import_job_id(job.job_id),
        )
        if arq_job is None:
            continue

        lost_runs = await count_lost_run(job.job_id)
        logger.warning(
            "import queued again, the queue had lost it job_id=%s user_id=%s "
            "lost_runs=%d",
            job.job_id,
            job.user_id,
            lost_runs,
        )
        queued += 1
    return queued
