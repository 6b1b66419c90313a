"""Import jobs started from the web: their rows, progress and results."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app.errors import NotFound
from app.events.service import change_set
from app.imports.tables import ImportJob

logger = logging.getLogger(__name__)

# Row errors kept on a job; the count of all errors is kept separately.
MAX_STORED_ERRORS = 500


def job_topics(job_id: int) -> list[str]:
    return [f"import:{job_id}"]


async def create_job(
    source: str, filenames: list[str], user_id: int, state: str = "queued"
) -> int:
    """Insert a job; a "draft" one waits for ``queue_draft``."""
    async with change_set(user_id) as changes:
        rows = await ImportJob.insert(
            ImportJob(source=source, filenames=filenames, user=user_id, state=state)
        ).returning(ImportJob.id)
        job_id = rows[0]["id"]
        changes.add("import.created", "import_job", job_id, job_topics(job_id))
    logger.info(
        "import %s job_id=%s source=%s user_id=%s", state, job_id, source, user_id
    )
    return job_id


async def queue_draft(job_id: int, user_id: int) -> bool:
    """Move the user's draft job to the queue; False when it is not a draft."""
    async with change_set(user_id) as changes:
        rows = await ImportJob.raw(
            "UPDATE import_job SET state = 'queued' "
            "WHERE id = {} AND \"user\" = {} AND state = 'draft' RETURNING id",
            job_id,
            user_id,
        )
        if rows:
            changes.add(
                "import.queued",
                "import_job",
                job_id,
                job_topics(job_id),
                {"state": ["draft", "queued"]},
            )
    if rows:
        logger.info("import queued job_id=%s user_id=%s", job_id, user_id)
    return bool(rows)


async def record_progress(job_id: int, done: int, total: int) -> None:
    async with change_set() as changes:
        await ImportJob.update(
            {
                ImportJob.state: "running",
                ImportJob.rows_done: done,
                ImportJob.rows_total: total,
            }
        ).where(ImportJob.id == job_id)
        changes.add(
            "import.progress", "import_job", job_id, job_topics(job_id), {"done": done}
        )


async def finish_job(
    job_id: int, state: str, rows_failed: int, errors: list[dict[str, Any]]
) -> None:
    async with change_set() as changes:
        await ImportJob.update(
            {
                ImportJob.state: state,
                ImportJob.rows_failed: rows_failed,
                ImportJob.errors: errors[:MAX_STORED_ERRORS],
                ImportJob.finished_at: dt.datetime.now(dt.UTC),
            }
        ).where(ImportJob.id == job_id)
        changes.add(
            "import.finished",
            "import_job",
            job_id,
            job_topics(job_id),
            {"state": state},
        )


async def get_job(job_id: int, user_id: int | None = None) -> dict[str, Any]:
    """Return a job; with ``user_id``, only if that user started it."""
    query = ImportJob.select().where(ImportJob.id == job_id)
    if user_id is not None:
        query = query.where(ImportJob.user == user_id)
    job = await query.output(load_json=True).first()
    if job is None:
        raise NotFound("import", job_id)
    return job


async def recent_jobs(user_id: int, limit: int = 20) -> list[dict[str, Any]]:
    return (
        await ImportJob.select()
        .output(load_json=True)
        .where(ImportJob.user == user_id)
        .order_by(ImportJob.id, ascending=False)
        .limit(limit)
    )
