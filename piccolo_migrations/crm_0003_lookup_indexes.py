"""Indexes for record pages and the importers' case-insensitive lookups."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T13:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add lookup indexes"

FORWARDS = [
    "CREATE INDEX deal_contact_idx ON deal (contact)",
    "CREATE INDEX account_parent_idx ON account (parent)",
    "CREATE INDEX account_lower_name_idx ON account (lower(name))",
    "CREATE INDEX account_lower_domain_idx ON account (lower(domain))",
    "CREATE INDEX contact_lower_email_idx ON contact (lower(email))",
    "CREATE INDEX app_user_lower_email_idx ON app_user (lower(email))",
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
