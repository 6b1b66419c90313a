"""The stored win probability of each deal, with its factors."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

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
