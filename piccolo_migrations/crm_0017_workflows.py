"""Workflow rules, their immutable versions, their runs and their timers.

Also adds tags to deals and tickets, and a due date to comments that
workflow rules create as follow-up tasks.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:26:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add workflow rules, rule versions, rule runs and timers"

FORWARDS = [
    """
    CREATE TABLE workflow_rule (
        id SERIAL PRIMARY KEY,
        object_type VARCHAR(40) NOT NULL,
        name VARCHAR(200) NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT false,
        position INTEGER NOT NULL DEFAULT 0,
        current_version INTEGER NOT NULL DEFAULT 1,
        trigger_kind VARCHAR(40) NOT NULL,
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE workflow_rule_version (
        id SERIAL PRIMARY KEY,
        rule INTEGER NOT NULL REFERENCES workflow_rule (id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        definition JSONB NOT NULL,
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (rule, version)
    )
    """,
    """
    CREATE TABLE rule_run (
        id BIGSERIAL PRIMARY KEY,
        rule INTEGER NOT NULL REFERENCES workflow_rule (id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        record_type VARCHAR(40) NOT NULL,
        record_id INTEGER,
        trigger VARCHAR(40) NOT NULL,
        outcome VARCHAR(20) NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        actions JSONB NOT NULL DEFAULT '[]'::jsonb,
        depth INTEGER NOT NULL DEFAULT 0,
        duration_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE workflow_timer (
        id BIGSERIAL PRIMARY KEY,
        rule INTEGER NOT NULL REFERENCES workflow_rule (id) ON DELETE CASCADE,
        rule_version INTEGER NOT NULL
            REFERENCES workflow_rule_version (id) ON DELETE CASCADE,
        record_type VARCHAR(40) NOT NULL,
        record_id INTEGER NOT NULL DEFAULT 0,
        due_at TIMESTAMPTZ NOT NULL,
        fired_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "ALTER TABLE deal ADD COLUMN tags TEXT[] NOT NULL DEFAULT ARRAY[]::text[]",
    "ALTER TABLE ticket ADD COLUMN tags TEXT[] NOT NULL DEFAULT ARRAY[]::text[]",
    "ALTER TABLE comment ADD COLUMN task_due_at TIMESTAMPTZ",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
