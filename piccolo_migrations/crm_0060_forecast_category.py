"""A forecast category on deals; empty means the one its stage implies."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:60:00:000060"
VERSION = "1.38.0"
DESCRIPTION = "Add a forecast_category column to deals"

FORWARDS = [
    "ALTER TABLE deal ADD COLUMN forecast_category VARCHAR(20) NULL "
    "CONSTRAINT deal_forecast_category_check CHECK (forecast_category IN "
    "('pipeline', 'best_case', 'commit', 'omitted'))",
]

BACKWARDS = [
    "ALTER TABLE deal DROP COLUMN forecast_category",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
