"""Build the Piccolo migrations that run hand-written SQL statements.

The shared code lives here and not in ``piccolo_migrations``, because
Piccolo imports every module of that folder by its bare name and would load
a shared module there as a migration.
"""

from __future__ import annotations

from collections.abc import Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.base import Engine

APP_NAME = "crm"


def migration_engine() -> Engine:
    """Return the engine that ``piccolo_conf`` configures for migrations."""
    engine = engine_finder()
    if engine is None:
        raise RuntimeError(
            "no Piccolo engine found: set PICCOLO_CONF to a module that defines DB"
        )
    return engine


async def run_statements(statements: Sequence[str]) -> None:
    """Run each statement in order. Inside a migration they share its transaction."""
    engine = migration_engine()
    for statement in statements:
        await engine.run_ddl(statement)


def sql_migration(
    migration_id: str,
    description: str,
    forwards: Sequence[str],
    backwards: Sequence[str] | None = None,
) -> MigrationManager:
    """Build a migration that runs ``forwards`` and, undone, ``backwards``.

    Without ``backwards`` the migration has no backwards step, so Piccolo
    only deletes its row in the migration table when it is undone.
    """
    manager = MigrationManager(
        migration_id=migration_id, app_name=APP_NAME, description=description
    )

    async def run_forwards() -> None:
        await run_statements(forwards)

    manager.add_raw(run_forwards)
    if backwards is not None:
        backwards_statements = backwards

        async def run_backwards() -> None:
            await run_statements(backwards_statements)

        manager.add_raw_backwards(run_backwards)
    return manager
