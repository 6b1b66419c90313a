"""Forecast quotas, nightly snapshots and trained win models."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000029"
VERSION = "1.38.0"
DESCRIPTION = "Add forecast quotas, snapshots and win models"

FORWARDS = [
    """
    CREATE TABLE forecast_quota (
        id SERIAL PRIMARY KEY,
        period_kind VARCHAR(10) NOT NULL CHECK (period_kind IN ('month', 'quarter')),
        period_start DATE NOT NULL,
        owner INTEGER REFERENCES app_user (id) ON DELETE CASCADE,
        team INTEGER REFERENCES team (id) ON DELETE CASCADE,
        amount NUMERIC(14, 2) NOT NULL CHECK (amount >= 0),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CHECK ((owner IS NULL) <> (team IS NULL))
    )
    """,
    """
    CREATE UNIQUE INDEX forecast_quota_owner_idx
        ON forecast_quota (period_kind, period_start, owner) WHERE owner IS NOT NULL
    """,
    """
    CREATE UNIQUE INDEX forecast_quota_team_idx
        ON forecast_quota (period_kind, period_start, team) WHERE team IS NOT NULL
    """,
    """
    CREATE TABLE forecast_snapshot (
        id SERIAL PRIMARY KEY,
        taken_on DATE NOT NULL,
        period_kind VARCHAR(10) NOT NULL,
        period_start DATE NOT NULL,
        group_kind VARCHAR(10) NOT NULL,
        group_id INTEGER NOT NULL DEFAULT 0,
        closed_won NUMERIC(16, 2) NOT NULL,
        commit NUMERIC(16, 2) NOT NULL,
        best_case NUMERIC(16, 2) NOT NULL,
        weighted NUMERIC(16, 2) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (period_kind, period_start, group_kind, group_id, taken_on)
    )
    """,
    """
    CREATE TABLE forecast_model (
        id SERIAL PRIMARY KEY,
        pipeline INTEGER NOT NULL UNIQUE REFERENCES pipeline (id) ON DELETE CASCADE,
        model JSONB NOT NULL DEFAULT '{}',
        closed_deals INTEGER NOT NULL DEFAULT 0,
        trained_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
]

BACKWARDS = [
    "DROP TABLE IF EXISTS forecast_model",
    "DROP TABLE IF EXISTS forecast_snapshot",
    "DROP TABLE IF EXISTS forecast_quota",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
