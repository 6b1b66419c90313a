"""Make audit_log append-only and index it for record history and search.

The triggers reject UPDATE, DELETE and TRUNCATE for every role, the owner
included, but the owner (or a superuser) can still disable or drop them.
docs/security-audit.md shows how to run the application as a role that owns
nothing, so that it cannot.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:23:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Make the audit log append-only"

FORWARDS = [
    """
    CREATE FUNCTION audit_log_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Audit rows can only be inserted.';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change()
    """,
    # PUBLIC has none of these by default; revoking makes that explicit and
    # undoes a GRANT ALL that a deployment script may have made.
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC",
    # A record's history tab, newest first.
    "CREATE INDEX audit_log_record_idx ON audit_log (record_type, record_id, id)",
    # The admin search by actor and by action, newest first.
    "CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id)",
    "CREATE INDEX audit_log_action_idx ON audit_log (action, id)",
    "CREATE INDEX audit_log_created_idx ON audit_log (created_at)",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
