"""A forecast category on deals; empty means the one its stage implies."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

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
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def run(statements: list[str]) -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in statements:
            await engine.run_ddl(statement)

    async def run_forwards() -> None:
        await run(FORWARDS)

    async def run_backwards() -> None:
        await run(BACKWARDS)

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
