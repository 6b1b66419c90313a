"""Webhook endpoints, the outbox of side effects, and the log of deliveries."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T19:30:00:000022"
VERSION = "1.38.0"
DESCRIPTION = "Add webhook endpoints, the outbox and webhook delivery attempts"

FORWARDS = [
    """
    CREATE TABLE webhook_endpoint (
        id SERIAL PRIMARY KEY,
        url VARCHAR(2000) NOT NULL,
        description VARCHAR(200) NOT NULL DEFAULT '',
        event_types VARCHAR(60)[] NOT NULL DEFAULT '{}',
        filters JSONB NOT NULL DEFAULT '{}',
        secret TEXT NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT true,
        disabled_reason TEXT NOT NULL DEFAULT '',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE outbox_message (
        id BIGSERIAL PRIMARY KEY,
        kind VARCHAR(20) NOT NULL,
        endpoint INTEGER REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
        message_id VARCHAR(60) NOT NULL UNIQUE,
        event_type VARCHAR(60) NOT NULL DEFAULT '',
        ordering_key VARCHAR(120),
        payload TEXT NOT NULL,
        status VARCHAR(20) NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        schedule_start INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_error TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        finished_at TIMESTAMPTZ
    )
    """,
    # The relay's scan of due messages, and the per-record order check.
    """
    CREATE INDEX outbox_message_due_idx ON outbox_message (next_attempt_at)
    WHERE status = 'pending'
    """,
    """
    CREATE INDEX outbox_message_ordering_idx ON outbox_message (ordering_key, id)
    WHERE status = 'pending'
    """,
    "CREATE INDEX outbox_message_endpoint_idx ON outbox_message (endpoint, id)",
    """
    CREATE TABLE webhook_attempt (
        id BIGSERIAL PRIMARY KEY,
        message BIGINT NOT NULL REFERENCES outbox_message (id) ON DELETE CASCADE,
        endpoint INTEGER REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        status_code INTEGER,
        outcome VARCHAR(20) NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        response_excerpt TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX webhook_attempt_endpoint_idx ON webhook_attempt (endpoint, id)",
    "CREATE INDEX webhook_attempt_message_idx ON webhook_attempt (message, id)",
]

BACKWARDS = [
    "DROP TABLE IF EXISTS webhook_attempt",
    "DROP TABLE IF EXISTS outbox_message",
    "DROP TABLE IF EXISTS webhook_endpoint",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
