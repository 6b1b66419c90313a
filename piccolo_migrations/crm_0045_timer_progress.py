"""Progress of a scheduled rule's run, which goes through records in batches."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T23:45:00:000045"
VERSION = "1.38.0"
DESCRIPTION = "Add the last handled record id to workflow timers"

FORWARDS = [
    "ALTER TABLE workflow_timer ADD COLUMN done_through INTEGER NOT NULL DEFAULT 0",
]

BACKWARDS = [
    "ALTER TABLE workflow_timer DROP COLUMN done_through",
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
