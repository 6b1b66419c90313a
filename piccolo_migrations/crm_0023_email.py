"""Email messages of tickets, their attachments, and reply templates."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000023"
VERSION = "1.38.0"
DESCRIPTION = "Add email messages, attachments and reply templates"

FORWARDS = [
    """
    CREATE TABLE email_message (
        id SERIAL PRIMARY KEY,
        direction VARCHAR(3) NOT NULL CHECK (direction IN ('in', 'out')),
        ticket INTEGER REFERENCES ticket (id) ON DELETE CASCADE,
        comment INTEGER REFERENCES comment (id) ON DELETE SET NULL,
        message_id VARCHAR(998) NOT NULL,
        dedupe_key VARCHAR(64) NOT NULL UNIQUE,
        in_reply_to TEXT NOT NULL DEFAULT '',
        "references" TEXT NOT NULL DEFAULT '',
        from_address VARCHAR(320) NOT NULL DEFAULT '',
        to_address TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        body_text TEXT NOT NULL DEFAULT '',
        outcome VARCHAR(20) NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        status VARCHAR(20) NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        tries INTEGER NOT NULL DEFAULT 0,
        author INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        size INTEGER NOT NULL DEFAULT 0,
        sent_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    # Threading looks up the messages that replies name.
    "CREATE INDEX email_message_message_id_idx ON email_message (message_id)",
    # A ticket's messages, newest first.
    "CREATE INDEX email_message_ticket_idx ON email_message (ticket, id)",
    """
    CREATE TABLE email_attachment (
        id SERIAL PRIMARY KEY,
        message INTEGER NOT NULL REFERENCES email_message (id) ON DELETE CASCADE,
        ticket INTEGER NOT NULL REFERENCES ticket (id) ON DELETE CASCADE,
        filename VARCHAR(255) NOT NULL,
        content_type VARCHAR(255) NOT NULL,
        size INTEGER NOT NULL,
        sha256 VARCHAR(64) NOT NULL,
        stored BOOLEAN NOT NULL DEFAULT true,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX email_attachment_ticket_idx ON email_attachment (ticket, id)",
    "CREATE INDEX email_attachment_message_idx ON email_attachment (message)",
    """
    CREATE TABLE reply_template (
        id SERIAL PRIMARY KEY,
        name VARCHAR(120) NOT NULL UNIQUE,
        body TEXT NOT NULL,
        updated_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
]

BACKWARDS = [
    "DROP TABLE IF EXISTS reply_template",
    "DROP TABLE IF EXISTS email_attachment",
    "DROP TABLE IF EXISTS email_message",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
