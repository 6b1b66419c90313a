"""Heartbeats on import jobs, so that a job whose worker died can be run again."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T16:24:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add import job heartbeats"

FORWARDS = [
    "ALTER TABLE import_job ADD COLUMN heartbeat_at TIMESTAMPTZ",
    "ALTER TABLE import_job ADD COLUMN lost_runs INTEGER NOT NULL DEFAULT 0",
    # The sweep for abandoned jobs reads only the unfinished ones.
    """
    CREATE INDEX import_job_unfinished_idx
    ON import_job (id) WHERE state IN ('queued', 'running')
    """,
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in FORWARDS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
