"""`crm audit verify` as a real process against the test run's database.

The tampering tests change the log as its owner with the append-only
trigger disabled, and put the row back afterwards, so the chain that later
tests verify is whole again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.audit.chain import row_hash
from app.audit.service import record
from app.audit.tables import AuditLog
from tests.conftest import TEST_DATABASE, database_url
from tests.integration.test_cli import crm

TAMPER_ROW = """
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
{statement};
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
"""


@pytest_asyncio.fixture
async def owner() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url(TEST_DATABASE))
    yield connection
    await connection.close()


async def three_rows() -> list[int]:
    return [
        await record("sign_in_failed", details={"email": f"try{number}@test.example"})
        for number in range(3)
    ]


async def stored_row(connection: asyncpg.Connection, audit_id: int) -> dict[str, Any]:
    row = await connection.fetchrow("SELECT * FROM audit_log WHERE id = $1", audit_id)
    assert row is not None
    return dict(row)


async def restore(connection: asyncpg.Connection, row: dict[str, Any]) -> None:
    """Put ``row`` back exactly as it was, whether it was changed or deleted."""
    async with connection.transaction():
        await connection.execute(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"
        )
        await connection.execute("DELETE FROM audit_log WHERE id = $1", row["id"])
        columns = list(row)
        await connection.execute(
            f"INSERT INTO audit_log ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${n}' for n in range(1, len(columns) + 1))})",
            *row.values(),
        )
        await connection.execute(
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"
        )


def verified_count(output: str) -> int:
    match = re.search(r"^([\d,]+) rows verified\.$", output, re.MULTILINE)
    assert match, output
    return int(match.group(1).replace(",", ""))


async def test_verify_passes_on_intact_log() -> None:
    await three_rows()

    result = crm("audit", "verify", "--batch-size", "2")

    assert result.returncode == 0, result.stderr
    assert verified_count(result.stdout) == await AuditLog.count()
    assert "Last row: id" in result.stdout
    # Progress goes to standard error, one update per batch.
    assert " rows" in result.stderr


async def test_verify_finds_altered_row(owner: asyncpg.Connection) -> None:
    _, middle, _ = await three_rows()
    original = await stored_row(owner, middle)

    await owner.execute(
        TAMPER_ROW.format(
            statement="UPDATE audit_log SET details = "
            f"""'{{"email": "someone-else@test.example"}}' WHERE id = {middle}"""
        )
    )
    try:
        result = crm("audit", "verify")
    finally:
        await restore(owner, original)

    assert result.returncode == 1
    assert f"audit row {middle} does not match its hash" in result.stderr
    assert "rows verified" not in result.stdout
    assert crm("audit", "verify").returncode == 0


async def test_verify_finds_deleted_row(owner: asyncpg.Connection) -> None:
    first, middle, last = await three_rows()
    original = await stored_row(owner, middle)

    await owner.execute(
        TAMPER_ROW.format(statement=f"DELETE FROM audit_log WHERE id = {middle}")
    )
    try:
        result = crm("audit", "verify")
    finally:
        await restore(owner, original)

    assert result.returncode == 1
    assert f"audit row {last} does not link to row {first} before it" in result.stderr
    assert crm("audit", "verify").returncode == 0


async def test_verify_finds_rehashed_row(owner: asyncpg.Connection) -> None:
    """A row changed and given a matching new hash breaks the next row's link."""
    _, middle, last = await three_rows()
    original = await stored_row(owner, middle)
    forged = {
        **original,
        "changes": {},
        "details": {"email": "forged@test.example"},
    }
    new_hash = row_hash(forged)

    await owner.execute(
        TAMPER_ROW.format(
            statement="UPDATE audit_log SET details = "
            f"""'{{"email": "forged@test.example"}}', hash = '{new_hash}' """
            f"WHERE id = {middle}"
        )
    )
    try:
        result = crm("audit", "verify")
    finally:
        await restore(owner, original)

    assert result.returncode == 1
    assert f"audit row {last} does not link to row {middle} before it" in result.stderr


@pytest.mark.parametrize("size", ["0", "abc"])
def test_verify_rejects_bad_batch_size(size: str) -> None:
    result = crm("audit", "verify", "--batch-size", size)

    assert result.returncode == 2
    assert "--batch-size" in result.stderr
