"""An index for finding the unconverted lead with a web form's email."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:67:00:000067"
VERSION = "1.38.0"
DESCRIPTION = "Index unconverted leads by email in lower case"

FORWARDS = [
    """
    CREATE INDEX lead_open_email_idx ON lead (lower(btrim(email)))
    WHERE status <> 'converted'
    """,
]

BACKWARDS = [
    "DROP INDEX lead_open_email_idx",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
