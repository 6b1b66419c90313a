"""The web-to-lead form's settings: source, owner, fields, redirect, framing."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T23:65:00:000065"
VERSION = "1.38.0"
DESCRIPTION = "Add the web-to-lead form's settings"

FORWARDS = [
    """
    CREATE TABLE web_form_settings (
        id SERIAL PRIMARY KEY,
        source VARCHAR(120) NOT NULL DEFAULT 'Web form',
        default_owner INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        default_team INTEGER REFERENCES team (id) ON DELETE SET NULL,
        fields JSONB NOT NULL DEFAULT '["name", "company"]',
        questions JSONB NOT NULL DEFAULT '[]',
        redirect_url VARCHAR(2000) NOT NULL DEFAULT '',
        allowed_origins JSONB NOT NULL DEFAULT '[]',
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
]

BACKWARDS = [
    "DROP TABLE web_form_settings",
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
