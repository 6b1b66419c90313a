"""The planning runs that set timers of a time-based rule for existing records."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-05T01:66:00:000066"
VERSION = "1.38.0"
DESCRIPTION = "Add the timer planning runs of workflow rules"

FORWARDS = [
    """
    CREATE TABLE workflow_timer_plan (
        rule INTEGER PRIMARY KEY REFERENCES workflow_rule (id) ON DELETE CASCADE,
        rule_version INTEGER NOT NULL
            REFERENCES workflow_rule_version (id) ON DELETE CASCADE,
        generation INTEGER NOT NULL DEFAULT 1,
        state VARCHAR(20) NOT NULL DEFAULT 'queued',
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        scheduled INTEGER NOT NULL DEFAULT 0,
        due_now INTEGER NOT NULL DEFAULT 0,
        done_through INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX workflow_timer_plan_active_idx ON workflow_timer_plan "
    "(updated_at) WHERE state IN ('queued', 'running')",
]

BACKWARDS = [
    "DROP TABLE workflow_timer_plan",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
