"""`crm db grant-app-role`: the application's role appends audit rows but
cannot change, remove or unguard them, and the app still works as it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from app.accounts.tables import Account
from app.audit.roles import AUDIT_RIGHTS_SQL, audit_rights_problems
from app.audit.tables import AuditLog
from tests.browserless import Session
from tests.factories import make_user, unique
from tests.servers import ROOT, web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

HTML = {"accept": "text/html"}


def url_as(role: str) -> str:
    """Return the test database's URL with ``role`` as the user (trust auth)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{role}@{host}{port}"))


def run_crm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def app_role() -> Iterator[str]:
    role = f"crm_app_{uuid.uuid4().hex[:8]}"
    result = run_crm("db", "grant-app-role", role)
    assert result.returncode == 0, result.stderr
    assert f"Role {role!r} may now run" in result.stdout
    try:
        yield role
    finally:
        cleanup = subprocess.run(
            [
                sys.executable,
                "-c",
                "import asyncio, asyncpg, sys\n"
                "async def main():\n"
                "    c = await asyncpg.connect(sys.argv[1])\n"
                "    await c.execute(f'DROP OWNED BY {sys.argv[2]}; "
                "DROP ROLE {sys.argv[2]}')\n"
                "    await c.close()\n"
                "asyncio.run(main())\n",
                os.environ["DATABASE_URL"],
                role,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cleanup.returncode == 0, cleanup.stderr


@pytest_asyncio.fixture(loop_scope="session")
async def as_app(app_role: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(url_as(app_role))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'export'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "ALTER TABLE audit_log OWNER TO CURRENT_USER",
    ],
)
async def test_app_role_cannot_change_audit_log(
    as_app: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_app.execute(statement)


async def test_app_role_reads_and_writes_tables(
    as_app: asyncpg.Connection,
) -> None:
    name = unique("Account")
    account_id = await as_app.fetchval(
        "INSERT INTO account (name) VALUES ($1) RETURNING id", name
    )
    await as_app.execute("UPDATE account SET city = 'Ghent' WHERE id = $1", account_id)
    city = await as_app.fetchval("SELECT city FROM account WHERE id = $1", account_id)
    assert city == "Ghent"
    await as_app.execute("DELETE FROM account WHERE id = $1", account_id)
    assert await as_app.fetchval("SELECT count(*) FROM audit_log") is not None


async def test_app_role_gets_no_warning(as_app: asyncpg.Connection) -> None:
    row = await as_app.fetchrow(AUDIT_RIGHTS_SQL)
    assert audit_rights_problems(dict(row)) == []


async def test_owner_role_gets_warning() -> None:
    rows = await AuditLog.raw(AUDIT_RIGHTS_SQL)
    problems = audit_rights_problems(rows[0])
    owner = rows[0]["role"]
    assert problems
    assert all(repr(owner) in problem for problem in problems)


async def test_web_as_app_role_appends_audit(app_role: str) -> None:
    user = await make_user(role="admin")
    rows = await Account.insert(Account(name=unique("Account"))).returning(Account.id)
    account_id = rows[0]["id"]
    with web_server({"DATABASE_URL": url_as(app_role)}) as server:
        session = Session(server.url)
        await session.sign_in(user.email)
        edited = await session.post(
            f"/accounts/{account_id}", data={"city": "Ghent", "base_city": ""}
        )
        await session.close()
    assert edited.status_code in (200, 302, 303), edited.text
    stored = await Account.select(Account.city).where(Account.id == account_id)
    assert stored == [{"city": "Ghent"}]
    audit = await AuditLog.select(AuditLog.actor_id, AuditLog.changes).where(
        (AuditLog.record_type == "account") & (AuditLog.record_id == account_id)
    )
    assert [row["actor_id"] for row in audit] == [user.id]
    assert "Ghent" in str(audit[0]["changes"])


async def test_grant_rejects_invalid_role() -> None:
    result = run_crm("db", "grant-app-role", "Robert'); DROP TABLE x;--")
    assert result.returncode != 0
    assert "is invalid" in result.stderr


async def test_grant_rejects_owner_role() -> None:
    owner = urlsplit(os.environ["DATABASE_URL"]).username or "postgres"
    result = run_crm("db", "grant-app-role", owner)
    assert result.returncode != 0
    assert owner in result.stderr
