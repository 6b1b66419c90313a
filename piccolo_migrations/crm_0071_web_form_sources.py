"""The sources a web-to-lead form may name besides its source label."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-05T08:71:00:000071"
VERSION = "1.38.0"
DESCRIPTION = "Add the other sources a web-to-lead form may name"

FORWARDS = [
    "ALTER TABLE web_form_settings ADD COLUMN sources JSONB NOT NULL DEFAULT '[]'",
]

BACKWARDS = [
    "ALTER TABLE web_form_settings DROP COLUMN sources",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
