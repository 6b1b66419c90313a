"""Fields administrators mark sensitive, and TEXT columns for their ciphertext."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T23:40:00:000040"
VERSION = "1.38.0"
DESCRIPTION = "Add sensitive_field and make the markable columns TEXT"

# Columns that may be marked sensitive. Changing varchar to text rewrites
# no rows in PostgreSQL, and the forms keep checking the plaintext length.
MARKABLE = [
    ("account", "phone", 60),
    ("account", "website", 300),
    ("account", "city", 120),
    ("contact", "title", 200),
    ("lead", "company", 200),
]

FORWARDS = [
    """
    CREATE TABLE sensitive_field (
        id SERIAL PRIMARY KEY,
        table_name VARCHAR(63) NOT NULL,
        column_name VARCHAR(63) NOT NULL,
        state VARCHAR(20) NOT NULL
            CHECK (state IN ('encrypting', 'encrypted', 'decrypting')),
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        job_id VARCHAR(120) NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        changed_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (table_name, column_name)
    )
    """,
    *(
        f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT"
        for table, column, _ in MARKABLE
    ),
]

# NOTE: going back fails while a marked column holds ciphertext longer than
# its varchar length, so unmark every field and let its job finish first.
BACKWARDS = [
    "DROP TABLE sensitive_field",
    *(
        f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({length})"
        for table, column, length in MARKABLE
    ),
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
