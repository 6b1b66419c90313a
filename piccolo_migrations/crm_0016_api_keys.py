"""The api_key table: hashed, scoped, expiring and revocable API keys."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:25:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add the api_key table"

FORWARDS = [
    """
    CREATE TABLE api_key (
        id SERIAL PRIMARY KEY,
        "user" INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
        name VARCHAR(120) NOT NULL,
        secret_hash VARCHAR(64) NOT NULL,
        scopes JSONB NOT NULL DEFAULT '{}'::jsonb,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ,
        revoked_at TIMESTAMPTZ,
        revoked_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        last_used_at TIMESTAMPTZ
    )
    """,
    # The key pages list a user's keys, newest first.
    'CREATE INDEX api_key_user_idx ON api_key ("user", id)',
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
