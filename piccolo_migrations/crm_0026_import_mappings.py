"""Remembered import mappings, and the rejected rows of each import."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000026"
VERSION = "1.38.0"
DESCRIPTION = "Add import mappings and the rejected rows of imports"

FORWARDS = [
    """
    CREATE TABLE import_mapping (
        id SERIAL PRIMARY KEY,
        name VARCHAR(120) NOT NULL,
        target VARCHAR(20) NOT NULL,
        header_key VARCHAR(64) NOT NULL,
        headers JSONB NOT NULL DEFAULT '[]',
        mapping JSONB NOT NULL DEFAULT '{}',
        owner INTEGER REFERENCES app_user (id) ON DELETE CASCADE,
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    # One name per user, and one per organisation (owner NULL).
    "CREATE UNIQUE INDEX import_mapping_name_idx "
    "ON import_mapping (coalesce(owner, 0), lower(name))",
    "CREATE INDEX import_mapping_header_idx ON import_mapping (header_key)",
    """
    CREATE TABLE import_rejected_row (
        id SERIAL PRIMARY KEY,
        job INTEGER NOT NULL REFERENCES import_job (id) ON DELETE CASCADE,
        file VARCHAR(255) NOT NULL DEFAULT '',
        line INTEGER NOT NULL DEFAULT 0,
        header JSONB NOT NULL DEFAULT '[]',
        fields JSONB NOT NULL DEFAULT '[]',
        errors TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX import_rejected_row_job_idx ON import_rejected_row (job, id)",
]
BACKWARDS = [
    "DROP TABLE IF EXISTS import_rejected_row",
    "DROP TABLE IF EXISTS import_mapping",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
