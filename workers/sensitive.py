"""Jobs that encrypt or decrypt the stored values of fields marked sensitive."""

from __future__ import annotations

import logging
from typing import Any

from app.encryption.marking import run_field_job, stalled_fields

logger = logging.getLogger(__name__)


async def sensitive_field_job(ctx: dict[str, Any], table: str, column: str) -> Any:
    return await run_field_job(table, column, job_id=ctx.get("job_id"))


async def resume_sensitive_fields(ctx: dict[str, Any]) -> int:
    """Queue again the field jobs that stopped reporting; return how many.

    The arq id names the field and the time of its last report, so one
    stall is queued once even when several workers look at it. A second job
    for a field whose first is only slow does no harm: each UPDATE replaces
    a value only if it is still the one read.
    """
    queued = 0
    for field in await stalled_fields():
        reported = int(field["updated_at"].timestamp())
        job = await ctx["redis"].enqueue_job(
            "sensitive_field_job",
            field["table_name"],
            field["column_name"],
            _job_id=f"sensitive:{field['id']}:{field['state']}:{reported}",
        )
        if job is None:
            continue
        queued += 1
        logger.warning(
            "sensitive field job queued again after no progress field=%s.%s "
            "field_id=%s state=%s job_id=%s",
            field["table_name"],
            field["column_name"],
            field["id"],
            field["state"],
            job.job_id,
        )
    return queued
