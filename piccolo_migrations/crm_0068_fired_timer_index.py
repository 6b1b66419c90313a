"""An index for finding the timers a rule already fired for a record."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T05:68:00:000068"
VERSION = "1.38.0"
DESCRIPTION = "Index fired workflow timers by rule and record"

FORWARDS = [
    """
    CREATE INDEX workflow_timer_fired_idx
    ON workflow_timer (rule, record_type, record_id, due_at)
    WHERE fired_at IS NOT NULL
    """,
]

BACKWARDS = [
    "DROP INDEX workflow_timer_fired_idx",
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
