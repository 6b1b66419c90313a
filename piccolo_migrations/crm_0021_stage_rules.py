"""The deal fields a stage requires before a deal may enter it."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000021"
VERSION = "1.38.0"
DESCRIPTION = "Add required fields to pipeline stages"

FORWARDS = [
    "ALTER TABLE stage ADD COLUMN required_fields VARCHAR(40)[] "
    "NOT NULL DEFAULT ARRAY[]::varchar[]",
]

BACKWARDS = [
    "ALTER TABLE stage DROP COLUMN required_fields",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
