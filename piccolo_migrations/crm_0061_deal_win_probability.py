"""The stored win probability of each deal, with its factors."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:61:00:000061"
VERSION = "1.38.0"
DESCRIPTION = "Store deals' win probabilities and factors"

FORWARDS = [
    "ALTER TABLE deal ADD COLUMN win_probability REAL NULL, "
    "ADD COLUMN win_chance JSONB NULL, "
    "ADD COLUMN win_scored_at TIMESTAMPTZ NULL",
]

BACKWARDS = [
    "ALTER TABLE deal DROP COLUMN win_probability, DROP COLUMN win_chance, "
    "DROP COLUMN win_scored_at",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
