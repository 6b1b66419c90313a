"""Trigram indexes for the searches, and indexes for the deal list's orders.

The searches match ``ILIKE '%text%'``, which a B-tree index cannot serve.
pg_trgm's GIN operator class can, for text of three characters or more.
pg_trgm ships with PostgreSQL's contrib modules and is a trusted extension
since PostgreSQL 13, so the database owner may create it. Undoing this
migration drops the indexes and keeps the extension, which other objects may
use by then.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-05T05:69:00:000069"
VERSION = "1.38.0"
DESCRIPTION = "Add trigram indexes for search and deal list indexes"

# (index name, table, indexed expression). Each expression is written as the
# queries write it, so that the planner matches them.
TRIGRAM_INDEXES = [
    ("account_name_trgm_idx", "account", "name"),
    ("account_domain_trgm_idx", "account", "domain"),
    # Phone numbers are matched by their digits alone.
    # NOTE: digits make few distinct trigrams, so the planner may still scan
    # the table. With 50,000 random numbers on PostgreSQL 15 (2 cores) it
    # chose a sequential scan (100 ms) over this index (8 ms when forced).
    (
        "account_phone_digits_trgm_idx",
        "account",
        "(regexp_replace(phone, '[^0-9]+', '', 'g'))",
    ),
    ("contact_name_trgm_idx", "contact", "(first_name || ' ' || last_name)"),
    ("contact_email_trgm_idx", "contact", "email"),
    ("deal_name_trgm_idx", "deal", "name"),
    ("ticket_subject_trgm_idx", "ticket", "subject"),
    ("lead_name_trgm_idx", "lead", "name"),
    ("lead_email_trgm_idx", "lead", "email"),
    ("lead_company_trgm_idx", "lead", "company"),
]

FORWARDS = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)"
        for name, table, expression in TRIGRAM_INDEXES
    ),
    # The deal list's orders other than by name, which pages read in order.
    "CREATE INDEX deal_updated_idx ON deal (updated_at DESC, id DESC)",
    "CREATE INDEX deal_close_date_idx ON deal (close_date, id)",
]

BACKWARDS = [
    "DROP INDEX deal_close_date_idx",
    "DROP INDEX deal_updated_idx",
    *(f"DROP INDEX {name}" for name, _, _ in reversed(TRIGRAM_INDEXES)),
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
