"""Import jobs as the worker runs them: heartbeats, clean stops and lost runs.

A run marks its job ``running`` and writes ``heartbeat_at`` while it works.
A worker that stops cleanly puts the job back to ``queued``. A job left
``running`` with an old heartbeat lost its worker, and runs again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.events.service import change_set
from app.imports.jobs import job_topics
from app.imports.tables import ImportJob

logger = logging.getLogger(__name__)

# Lost runs after which a job fails for good, so that an import that kills
# its worker every time (by running out of memory, say) does not run forever.
MAX_LOST_RUNS = 3
# Unfinished jobs returned by one call of ``abandoned_jobs``.
SWEEP_LIMIT = 100


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    user_id: int | None
    source: str
    # Lost runs so far, this run's predecessor included.
    lost_runs: int
    # True when the previous run of this job was lost.
    resumed: bool


async def claim_job(job_id: int) -> ClaimedJob | None:
    """Mark an unfinished job ``running`` and return it.

    A job that is still ``running`` when a run starts lost its previous run,
    because a clean stop marks it ``queued``. That run is added to
    ``lost_runs``. Returns None when the job is finished or does not exist.
    """
    async with change_set() as changes:
        rows = await ImportJob.raw(
            "UPDATE import_job AS j SET state = 'running', heartbeat_at = now(), "
            "lost_runs = j.lost_runs "
            "+ CASE WHEN previous.state = 'running' THEN 1 ELSE 0 END "
            "FROM (SELECT id, state FROM import_job WHERE id = {} FOR UPDATE) "
            "AS previous "
            "WHERE j.id = previous.id AND previous.state IN ('queued', 'running') "
            'RETURNING j."user" AS user_id, j.source, j.lost_runs, '
            "previous.state AS previous_state",
            job_id,
        )
        if not rows:
            return None
        changes.add("import.started", "import_job", job_id, job_topics(job_id))

    row = rows[0]
    return ClaimedJob(
        job_id=job_id,
        user_id=row["user_id"],
        source=row["source"],
        lost_runs=row["lost_runs"],
        resumed=row["previous_state"] == "running",
    )


async def record_heartbeat(job_id: int) -> None:
    await ImportJob.raw(
        "UPDATE import_job SET heartbeat_at = now() "
        "WHERE id = {} AND state = 'running'",
        job_id,
    )


async def record_progress(job_id: int, done: int, total: int) -> None:
    """Store the rows done so far, which is also a heartbeat."""
    async with change_set() as changes:
        await ImportJob.raw(
            "UPDATE import_job SET state = 'running', rows_done = {}, "
            "rows_total = {}, heartbeat_at = now() WHERE id = {}",
            done,
            total,
            job_id,
        )
        changes.add(
            "import.progress", "import_job", job_id, job_topics(job_id), {"done": done}
        )


async def release_job(job_id: int) -> None:
    """Put a running job back to ``queued`` because its worker is stopping."""
    async with change_set() as changes:
        await ImportJob.raw(
            "UPDATE import_job SET state = 'queued', heartbeat_at = now() "
            "WHERE id = {} AND state = 'running'",
            job_id,
        )
        changes.add("import.queued", "import_job", job_id, job_topics(job_id))


async def count_lost_run(job_id: int) -> int:
    """Add a run that the queue lost to ``lost_runs`` and return the new count."""
    rows = await ImportJob.raw(
        "UPDATE import_job SET lost_runs = lost_runs + 1 WHERE id = {} "
        "RETURNING lost_runs",
        job_id,
    )
    return rows[0]["lost_runs"] if rows else 0


async def abandoned_jobs(stale_seconds: float) -> list[ClaimedJob]:
    """Return unfinished jobs with no heartbeat for ``stale_seconds``, oldest first.

    A queued job that never ran counts from its creation. The result is
    limited to ``SWEEP_LIMIT`` jobs, so a later sweep takes the rest.
    """
    rows = await ImportJob.raw(
        'SELECT id, "user" AS user_id, source, lost_runs, state FROM import_job '
        "WHERE state IN ('queued', 'running') "
        "AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => {}) "
        "ORDER BY id LIMIT {}",
        stale_seconds,
        SWEEP_LIMIT,
    )
    return [
        ClaimedJob(
            job_id=row["id"],
            user_id=row["user_id"],
            source=row["source"],
            lost_runs=row["lost_runs"],
            resumed=row["state"] == "running",
        )
        for row in rows
    ]
