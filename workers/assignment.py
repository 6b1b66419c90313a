"""Assigning a record to an agent of a team from a queued job."""

from __future__ import annotations

from typing import Any

from arq.worker import Function, func

from app.assignment.service import assign


async def assign_record(
    ctx: dict[str, Any], record_type: str, record_id: int, team_id: int
) -> int | None:
    """Assign one ticket or deal; return the chosen user id or None."""
    return await assign(record_type, record_id, team_id)


# One try only: a retry after a lost result would assign the record again,
# to the next agent in turn.
assign_job: Function = func(assign_record, max_tries=1)
