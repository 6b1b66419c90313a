"""Indexes for record pages and the importers' case-insensitive lookups."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

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
    return sql_migration(ID, DESCRIPTION, FORWARDS)
