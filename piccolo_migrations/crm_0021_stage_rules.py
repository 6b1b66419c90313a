"""The deal fields a stage requires before a deal may enter it."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T19:30:00:000021"
VERSION = "1.38.0"
DESCRIPTION = "Add required fields to pipeline stages"

FORWARDS = [
    "ALTER TABLE stage ADD COLUMN required_fields VARCHAR(40)[] "
    "NOT NULL DEFAULT ARRAY[]::varchar[]",
]

BACKWARDS = [
    "ALTER TABLE stage DROP COLUMN required_fields",
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
