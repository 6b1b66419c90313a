"""Progress of a scheduled rule's run, which goes through records in batches."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:45:00:000045"
VERSION = "1.38.0"
DESCRIPTION = "Add the last handled record id to workflow timers"

FORWARDS = [
    "ALTER TABLE workflow_timer ADD COLUMN done_through INTEGER NOT NULL DEFAULT 0",
]

BACKWARDS = [
    "ALTER TABLE workflow_timer DROP COLUMN done_through",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
