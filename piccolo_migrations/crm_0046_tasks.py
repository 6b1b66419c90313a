"""Follow-up tasks on deals and tickets, with a due time and a reminder."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:46:00:000046"
VERSION = "1.38.0"
DESCRIPTION = "Add the task table"

FORWARDS = [
    """
    CREATE TABLE task (
        id SERIAL PRIMARY KEY,
        title VARCHAR(500) NOT NULL,
        deal INTEGER REFERENCES deal (id) ON DELETE CASCADE,
        ticket INTEGER REFERENCES ticket (id) ON DELETE CASCADE,
        assignee INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        due_at TIMESTAMPTZ NOT NULL,
        done BOOLEAN NOT NULL DEFAULT false,
        done_at TIMESTAMPTZ,
        done_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        reminded_at TIMESTAMPTZ,
        rule INTEGER REFERENCES workflow_rule (id) ON DELETE SET NULL,
        version INTEGER NOT NULL DEFAULT 1,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT task_one_record CHECK ((deal IS NULL) <> (ticket IS NULL))
    )
    """,
    "CREATE INDEX task_deal_idx ON task (deal) WHERE deal IS NOT NULL",
    "CREATE INDEX task_ticket_idx ON task (ticket) WHERE ticket IS NOT NULL",
    "CREATE INDEX task_assignee_idx ON task (assignee, done, due_at)",
    "CREATE INDEX task_reminder_idx ON task (due_at) "
    "WHERE NOT done AND reminded_at IS NULL",
]

BACKWARDS = [
    "DROP TABLE task",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
