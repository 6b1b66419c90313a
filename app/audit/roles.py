"""The database role the application runs as, which cannot change audit rows.

The migrations run as the role that owns the tables. The web and worker
processes run as a login role that owns nothing, so that it cannot disable
the audit triggers, and whose only rights on ``audit_log`` are SELECT and
INSERT. ``grant_app_role`` sets such a role up, and ``audit_log_warnings``
is checked at startup.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Rights on audit_log that would let a role change or remove rows.
AUDIT_LOG_WRITES = ("UPDATE", "DELETE", "TRUNCATE")
TABLE_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"


class RoleError(ValueError):
    """A role that cannot be the application's role; the message gives the reason."""


def check_role_name(role: str) -> str:
    if not ROLE_NAME.fullmatch(role):
        raise RoleError(
            f"role name {role!r} is invalid: use 1 to 63 lower-case letters, "
            "digits and _, starting with a letter or _"
        )
    return role


def grant_statements(role: str, owner: str, database: str) -> list[str]:
    """Return the SQL that gives ``role`` the application's rights and no more.

    ``owner`` is the role that owns the tables and runs the migrations. Its
    default privileges give ``role`` the same rights on tables that later
    migrations create. Only ``audit_log`` is held to SELECT and INSERT.
    """
    quoted = f'"{role}"'
    owner_quoted = '"' + owner.replace('"', '""') + '"'
    database_quoted = '"' + database.replace('"', '""') + '"'
    return [
        f"GRANT CONNECT ON DATABASE {database_quoted} TO {quoted}",
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT {TABLE_RIGHTS} ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        f"REVOKE ALL ON audit_log FROM {quoted}",
        f"GRANT SELECT, INSERT ON audit_log TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_quoted} IN SCHEMA public "
        f"GRANT {TABLE_RIGHTS} ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_quoted} IN SCHEMA public "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {quoted}",
    ]


async def grant_app_role(
    connection: Any, role: str, password: str | None = None
) -> list[str]:
    """Create ``role`` as a login role if missing and grant it the app's rights.

    ``connection`` is an asyncpg connection of the tables' owner. Raises
    RoleError when ``role`` is invalid, is the connected role, owns
    ``audit_log``, is a superuser, or may create roles or bypass row
    security. Returns the statements it ran, without the password.
    """
    check_role_name(role)
    current = await connection.fetchval("SELECT current_user")
    if role == current:
        raise RoleError(
            f"role {role!r} is the role running this command, which owns the "
            "tables; name another role for the web and worker processes"
        )
    database = await connection.fetchval("SELECT current_database()")
    existing = await connection.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1",
        role,
    )
    run = []
    if existing is None:
        create = f'CREATE ROLE "{role}" LOGIN'
        run.append(create)
        if password:
            literal = await connection.fetchval("SELECT quote_literal($1)", password)
            create += f" PASSWORD {literal}"
        await connection.execute(create)
    elif existing["rolsuper"] or existing["rolcreaterole"] or existing["rolbypassrls"]:
        raise RoleError(
            f"role {role!r} is a superuser or may create roles or bypass row "
            "security; use a plain login role"
        )
    else:
        statement = f'ALTER ROLE "{role}" LOGIN'
        run.append(statement)
        if password:
            literal = await connection.fetchval("SELECT quote_literal($1)", password)
            statement += f" PASSWORD {literal}"
        await connection.execute(statement)

    owns = await connection.fetchval(
        "SELECT pg_has_role($1, tableowner, 'MEMBER') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename = 'audit_log'",
        role,
    )
    if owns:
        raise RoleError(
            f"role {role!r} owns audit_log or is a member of its owner, so it "
            "could disable the audit triggers; use a role that owns nothing"
        )

    statements = grant_statements(role, current, database)
    async with connection.transaction():
        for statement in statements:
            await connection.execute(statement)
    logger.info("application role granted role=%s database=%s", role, database)
    return run + statements


AUDIT_RIGHTS_SQL = """
SELECT current_user AS role,
       r.rolsuper AS superuser,
       pg_has_role(current_user, t.tableowner, 'MEMBER') AS owns,
       has_table_privilege('public.audit_log', 'UPDATE') AS can_update,
       has_table_privilege('public.audit_log', 'DELETE') AS can_delete,
       has_table_privilege('public.audit_log', 'TRUNCATE') AS can_truncate
FROM pg_tables t, pg_roles r
WHERE t.schemaname = 'public' AND t.tablename = 'audit_log'
  AND r.rolname = current_user
"""


async def audit_log_warnings() -> list[str]:
    """Return what the connected role may do to audit rows that it should not.

    Empty when it cannot change them, or when ``audit_log`` does not exist.
    """
    from app.audit.tables import AuditLog

    rows = await AuditLog.raw(AUDIT_RIGHTS_SQL)
    return audit_rights_problems(rows[0]) if rows else []


def audit_rights_problems(row: Mapping[str, Any]) -> list[str]:
    """Describe the problems in one row of ``AUDIT_RIGHTS_SQL``."""
    role = row["role"]
    problems = []
    if row["superuser"]:
        problems.append(f"database role {role!r} is a superuser")
    elif row["owns"]:
        problems.append(
            f"database role {role!r} owns audit_log, so it can disable its triggers"
        )
    rights = [
        right
        for right, held in zip(
            AUDIT_LOG_WRITES,
            (row["can_update"], row["can_delete"], row["can_truncate"]),
            strict=True,
        )
        if held
    ]
    if rights:
        problems.append(
            f"database role {role!r} holds {', '.join(rights)} on audit_log"
        )
    return problems


async def warn_about_audit_rights(process: str) -> None:
    """Log a warning for each way the connected role could change audit rows."""
    try:
        problems = await audit_log_warnings()
    except (OSError, asyncpg.PostgresError) as error:
        logger.warning(
            "%s: checking the rights on audit_log failed: %s", process, error
        )
        return
    for problem in problems:
        logger.warning(
            "%s: %s; run the web and worker processes as a role set up with "
            "`crm db grant-app-role` (see docs/security-audit.md)",
            process,
            problem,
        )
