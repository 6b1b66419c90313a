"""The web-to-lead form's settings: source, owner, fields, redirect, framing."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:65:00:000065"
VERSION = "1.38.0"
DESCRIPTION = "Add the web-to-lead form's settings"

FORWARDS = [
    """
    CREATE TABLE web_form_settings (
        id SERIAL PRIMARY KEY,
        source VARCHAR(120) NOT NULL DEFAULT 'Web form',
        default_owner INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        default_team INTEGER REFERENCES team (id) ON DELETE SET NULL,
        fields JSONB NOT NULL DEFAULT '["name", "company"]',
        questions JSONB NOT NULL DEFAULT '[]',
        redirect_url VARCHAR(2000) NOT NULL DEFAULT '',
        allowed_origins JSONB NOT NULL DEFAULT '[]',
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
]

BACKWARDS = [
    "DROP TABLE web_form_settings",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
