"""An index for finding the timers a rule already fired for a record."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-05T05:68:00:000068"
VERSION = "1.38.0"
DESCRIPTION = "Index fired workflow timers by rule and record"

FORWARDS = [
    """
    CREATE INDEX workflow_timer_fired_idx
    ON workflow_timer (rule, record_type, record_id, due_at)
    WHERE fired_at IS NOT NULL
    """,
]

BACKWARDS = [
    "DROP INDEX workflow_timer_fired_idx",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
