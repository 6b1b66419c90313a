"""An index for finding the unconverted lead with a web form's email."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T23:67:00:000067"
VERSION = "1.38.0"
DESCRIPTION = "Index unconverted leads by email in lower case"

FORWARDS = [
    """
    CREATE INDEX lead_open_email_idx ON lead (lower(btrim(email)))
    WHERE status <> 'converted'
    """,
]

BACKWARDS = [
    "DROP INDEX lead_open_email_idx",
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
