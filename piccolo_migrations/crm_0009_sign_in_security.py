"""Tables for two-factor sign-in, recovery codes and password reset tokens."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:21:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add two-factor, recovery code and password reset tables"

FORWARDS = [
    """
    CREATE TABLE two_factor (
        id SERIAL PRIMARY KEY,
        "user" INTEGER NOT NULL UNIQUE REFERENCES app_user (id) ON DELETE CASCADE,
        secret TEXT NOT NULL,
        last_step BIGINT NOT NULL DEFAULT 0,
        enabled_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE recovery_code (
        id SERIAL PRIMARY KEY,
        "user" INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
        code_hash VARCHAR(64) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        used_at TIMESTAMPTZ
    )
    """,
    # A code is looked up by user and hash; unused codes are counted per user.
    """
    CREATE UNIQUE INDEX recovery_code_user_hash_idx
    ON recovery_code ("user", code_hash)
    """,
    """
    CREATE TABLE password_reset (
        id SERIAL PRIMARY KEY,
        "user" INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
        token_hash VARCHAR(64) NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ NOT NULL,
        used_at TIMESTAMPTZ
    )
    """,
    'CREATE INDEX password_reset_user_idx ON password_reset ("user")',
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
