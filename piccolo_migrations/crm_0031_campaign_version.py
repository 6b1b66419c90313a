"""A version number on campaigns, for the API's If-Match checks."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T19:30:00:000031"
VERSION = "1.38.0"
DESCRIPTION = "Add a version column to campaigns"

FORWARDS = [
    "ALTER TABLE campaign ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
]

BACKWARDS = [
    "ALTER TABLE campaign DROP COLUMN version",
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
