"""Imports started from the web, run in the worker with live progress."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from app.imports.jobs import finish_job, record_progress
from app.imports.service import run_import

logger = logging.getLogger(__name__)


def remove_uploads(paths: list[str]) -> None:
    """Delete the uploaded copies once imported; the database has the data."""
    for path in map(Path, paths):
        if path.is_dir() and path.parent.name == "uploads":
            shutil.rmtree(path, ignore_errors=True)


async def import_files(
    ctx: dict[str, Any], job_id: int, source: str, paths: list[str]
) -> dict[str, Any]:
    logger.info(
        "import started job_id=%s source=%s files=%d", job_id, source, len(paths)
    )

    async def progress(done: int, total: int) -> None:
        await record_progress(job_id, done, total)

    try:
        report = await run_import(
            source, [Path(path) for path in paths], on_progress=progress
        )
    except Exception as error:
        logger.exception("import failed job_id=%s source=%s", job_id, source)
        await finish_job(
            job_id,
            "failed",
            0,
            [{"file": "", "row": 0, "column": "", "value": "", "reason": str(error)}],
        )
        raise
    finally:
        remove_uploads(paths)

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
    logger.info(
        "import finished job_id=%s rows=%s failed=%s",
        job_id,
        report.rows_total,
        report.rows_failed,
    )
    return {"rows_total": report.rows_total, "rows_failed": report.rows_failed}
