"""Walk the audit log in id order and check every row's hash and link."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.audit.chain import GENESIS_HASH, row_hash
from app.audit.tables import AuditLog

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000

BATCH_SQL = """
SELECT id, created_at, actor_id, client_address, action, record_type, record_id,
       changes::text AS changes, details::text AS details, prev_hash, hash
FROM audit_log WHERE id > {} ORDER BY id LIMIT {}
"""

Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class ChainProblem:
    row_id: int
    reason: str

    @property
    def message(self) -> str:
        return f"audit row {self.row_id} {self.reason}"


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    last_id: int | None
    last_hash: str
    problem: ChainProblem | None = None


async def verify_chain(
    batch_size: int = DEFAULT_BATCH_SIZE, on_progress: Progress | None = None
) -> VerifyResult:
    """Check the whole log and stop at the first row that does not match.

    A row whose own hash differs was changed after it was written. A row
    whose ``prev_hash`` differs from the hash of the row before it follows
    a removed row, or a row whose hash was recomputed after a change.
    Removing the newest rows leaves a valid chain, so compare ``last_hash``
    with a copy kept elsewhere to detect that.
    """
    total = await AuditLog.count()
    checked = 0
    last_id: int | None = None
    expected_prev = GENESIS_HASH
    logger.info("audit log verification started rows=%d", total)

    while True:
        rows = await AuditLog.raw(BATCH_SQL, last_id or 0, batch_size)
        for row in rows:
            row["changes"] = json.loads(row["changes"])
            row["details"] = json.loads(row["details"])
            if row["prev_hash"] != expected_prev:
                return failed(
                    checked, last_id, expected_prev, link_problem(row, last_id)
                )
            if row_hash(row) != row["hash"]:
                return failed(
                    checked,
                    last_id,
                    expected_prev,
                    ChainProblem(
                        row["id"],
                        "does not match its hash, so it was changed after it "
                        "was written",
                    ),
                )
            checked += 1
            last_id = row["id"]
            expected_prev = row["hash"]
        if on_progress is not None:
            await on_progress(checked, max(total, checked))
        if len(rows) < batch_size:
            break

    logger.info("audit log verified rows=%d last_id=%s", checked, last_id)
    return VerifyResult(rows=checked, last_id=last_id, last_hash=expected_prev)


def link_problem(row: dict[str, Any], last_id: int | None) -> ChainProblem:
    if last_id is None:
        return ChainProblem(
            row["id"],
            f"is the first row, but its prev_hash is {row['prev_hash']} instead of "
            "64 zeros, so the rows before it were removed",
        )
    return ChainProblem(
        row["id"],
        f"does not link to row {last_id} before it: its prev_hash is "
        f"{row['prev_hash']}, so a row between them was removed or row {last_id} "
        "was rewritten with a new hash",
    )


def failed(
    checked: int, last_id: int | None, last_hash: str, problem: ChainProblem
) -> VerifyResult:
    logger.error(
        "audit log verification failed audit_id=%s rows_verified=%d reason=%s",
        problem.row_id,
        checked,
        problem.reason,
    )
    return VerifyResult(
        rows=checked, last_id=last_id, last_hash=last_hash, problem=problem
    )
