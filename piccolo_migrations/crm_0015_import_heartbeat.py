"""Heartbeats on import jobs, so that a job whose worker died can be run again."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:24:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add import job heartbeats"

FORWARDS = [
    "ALTER TABLE import_job ADD COLUMN heartbeat_at TIMESTAMPTZ",
    "ALTER TABLE import_job ADD COLUMN lost_runs INTEGER NOT NULL DEFAULT 0",
    # The sweep for abandoned jobs reads only the unfinished ones.
    """
    CREATE INDEX import_job_unfinished_idx
    ON import_job (id) WHERE state IN ('queued', 'running')
    """,
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
