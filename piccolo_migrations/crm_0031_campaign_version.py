"""A version number on campaigns, for the API's If-Match checks."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000031"
VERSION = "1.38.0"
DESCRIPTION = "Add a version column to campaigns"

FORWARDS = [
    "ALTER TABLE campaign ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
]

BACKWARDS = [
    "ALTER TABLE campaign DROP COLUMN version",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
