"""Email campaigns, their recipients, suppressed addresses, and the built-in
roles' grants on campaigns."""

import json

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.querystring import QueryString

from app.migration_sql import migration_engine, sql_migration

ID = "2026-12-04T19:30:00:000030"
VERSION = "1.38.0"
DESCRIPTION = "Add email campaigns, campaign recipients and email suppressions"

FORWARDS = [
    """
    CREATE TABLE campaign (
        id SERIAL PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        audience VARCHAR(10) NOT NULL DEFAULT 'contact',
        segment JSONB NOT NULL DEFAULT '{"type": "group", "match": "all", "items": []}',
        subject VARCHAR(300) NOT NULL,
        body TEXT NOT NULL,
        send_at TIMESTAMPTZ,
        rate_per_minute INTEGER NOT NULL DEFAULT 60,
        influence_days INTEGER NOT NULL DEFAULT 30,
        state VARCHAR(20) NOT NULL DEFAULT 'draft',
        created_by INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        lease_owner VARCHAR(64),
        heartbeat_at TIMESTAMPTZ,
        CHECK (audience IN ('contact', 'lead')),
        CHECK (state IN ('draft', 'scheduled', 'sending', 'sent', 'cancelled')),
        CHECK (rate_per_minute BETWEEN 1 AND 6000),
        CHECK (influence_days BETWEEN 1 AND 365)
    )
    """,
    # The dispatcher looks for due and abandoned campaigns every few seconds.
    "CREATE INDEX campaign_state_idx ON campaign (state, send_at)",
    """
    CREATE TABLE campaign_recipient (
        id SERIAL PRIMARY KEY,
        campaign INTEGER NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
        contact INTEGER REFERENCES contact (id) ON DELETE SET NULL,
        lead INTEGER REFERENCES lead (id) ON DELETE SET NULL,
        email VARCHAR(254) NOT NULL,
        name VARCHAR(250) NOT NULL DEFAULT '',
        fields JSONB NOT NULL DEFAULT '{}',
        message_id VARCHAR(250) NOT NULL UNIQUE,
        state VARCHAR(20) NOT NULL DEFAULT 'pending',
        reason VARCHAR(500) NOT NULL DEFAULT '',
        claimed_at TIMESTAMPTZ,
        sent_at TIMESTAMPTZ,
        replied_at TIMESTAMPTZ,
        bounced_at TIMESTAMPTZ,
        unsubscribed_at TIMESTAMPTZ,
        UNIQUE (campaign, email),
        CHECK (state IN ('pending', 'sending', 'sent', 'skipped', 'failed',
                         'interrupted'))
    )
    """,
    # Senders claim the next pending recipient of a campaign in id order.
    "CREATE INDEX campaign_recipient_pending_idx ON campaign_recipient "
    "(campaign, id) WHERE state = 'pending'",
    "CREATE INDEX campaign_recipient_contact_idx ON campaign_recipient (contact)",
    "CREATE INDEX campaign_recipient_lead_idx ON campaign_recipient (lead)",
    """
    CREATE TABLE email_suppression (
        id SERIAL PRIMARY KEY,
        email VARCHAR(254) NOT NULL UNIQUE,
        reason VARCHAR(20) NOT NULL,
        recipient INTEGER REFERENCES campaign_recipient (id) ON DELETE SET NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CHECK (email = lower(email)),
        CHECK (reason IN ('unsubscribed', 'bounced'))
    )
    """,
    # Influence reports find deals by contact and creation time.
    "CREATE INDEX IF NOT EXISTS deal_contact_created_idx ON deal (contact, created_at)",
]

# Sales managers run campaigns, sales reps and the read-only role see them.
CAMPAIGN_GRANTS = {
    "admin": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
    "sales_manager": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
    "sales_rep": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
    "read_only": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
}

BACKWARDS = [
    "UPDATE role SET permissions = permissions - 'campaign' WHERE builtin",
    "DROP INDEX IF EXISTS deal_contact_created_idx",
    "DROP TABLE email_suppression",
    "DROP TABLE campaign_recipient",
    "DROP TABLE campaign",
]


async def forwards() -> MigrationManager:
    manager = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)

    async def grant_roles() -> None:
        engine = migration_engine()
        for role, grants in CAMPAIGN_GRANTS.items():
            await engine.run_querystring(
                QueryString(
                    "UPDATE role SET permissions = permissions || "
                    "jsonb_build_object('campaign', {}::jsonb) "
                    "WHERE name = {} AND builtin",
                    json.dumps(grants),
                    role,
                )
            )

    manager.add_raw(grant_roles)
    return manager
