"""Leads, their activities, scoring rules and trained scoring models, and the
built-in roles' grants on leads."""

import json

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.querystring import QueryString

from app.migration_sql import migration_engine, sql_migration

ID = "2026-12-04T19:30:00:000027"
VERSION = "1.38.0"
DESCRIPTION = "Add leads, lead activities, scoring rules and scoring models"

FORWARDS = [
    """
    CREATE TABLE lead (
        id SERIAL PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        version INTEGER NOT NULL DEFAULT 1,
        external_key VARCHAR(200) UNIQUE,
        import_version INTEGER,
        name VARCHAR(200) NOT NULL DEFAULT '',
        email VARCHAR(254),
        company VARCHAR(200) NOT NULL DEFAULT '',
        source VARCHAR(120) NOT NULL DEFAULT '',
        status VARCHAR(20) NOT NULL DEFAULT 'new',
        owner INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        answers JSONB NOT NULL DEFAULT '{}',
        closed_at TIMESTAMPTZ,
        rule_score INTEGER,
        model_score INTEGER,
        score INTEGER,
        score_factors JSONB NOT NULL DEFAULT '[]',
        model_version INTEGER,
        scored_at TIMESTAMPTZ,
        converted_contact INTEGER REFERENCES contact (id) ON DELETE SET NULL,
        converted_account INTEGER REFERENCES account (id) ON DELETE SET NULL,
        converted_deal INTEGER REFERENCES deal (id) ON DELETE SET NULL,
        converted_at TIMESTAMPTZ,
        CHECK (status IN ('new', 'working', 'qualified', 'unqualified', 'converted'))
    )
    """,
    "CREATE INDEX lead_owner_idx ON lead (owner)",
    "CREATE INDEX lead_status_idx ON lead (status, id)",
    "CREATE INDEX lead_score_idx ON lead (score DESC NULLS LAST, id)",
    "CREATE INDEX lead_email_idx ON lead (lower(email))",
    """
    CREATE TABLE lead_activity (
        id SERIAL PRIMARY KEY,
        lead INTEGER NOT NULL REFERENCES lead (id) ON DELETE CASCADE,
        kind VARCHAR(40) NOT NULL,
        detail VARCHAR(300) NOT NULL DEFAULT '',
        actor INTEGER REFERENCES app_user (id) ON DELETE SET NULL,
        occurred_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX lead_activity_lead_idx ON lead_activity (lead, occurred_at DESC)",
    """
    CREATE TABLE scoring_rule (
        id SERIAL PRIMARY KEY,
        kind VARCHAR(10) NOT NULL CHECK (kind IN ('field', 'activity')),
        field VARCHAR(120) NOT NULL,
        value VARCHAR(200) NOT NULL DEFAULT '',
        points INTEGER NOT NULL,
        half_life_days DOUBLE PRECISION,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE scoring_model (
        id SERIAL PRIMARY KEY,
        version INTEGER NOT NULL UNIQUE,
        trained_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        model BYTEA NOT NULL,
        metrics JSONB NOT NULL DEFAULT '{}',
        outcomes INTEGER NOT NULL
    )
    """,
]

# What the built-in roles may do with leads: sales roles work them, the
# support roles see none, and the read-only role reads them.
LEAD_GRANTS = {
    "admin": {"read": "all", "create": "all", "edit": "all", "delete": "all"},
    "sales_manager": {"read": "all", "create": "all", "edit": "all", "delete": "team"},
    "sales_rep": {"read": "team", "create": "own", "edit": "own", "delete": "none"},
    "read_only": {"read": "all", "create": "none", "edit": "none", "delete": "none"},
}

BACKWARDS = [
    "UPDATE role SET permissions = permissions - 'lead' WHERE builtin",
    "DROP TABLE scoring_model",
    "DROP TABLE scoring_rule",
    "DROP TABLE lead_activity",
    "DROP TABLE lead",
]


async def forwards() -> MigrationManager:
    manager = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)

    async def grant_roles() -> None:
        engine = migration_engine()
        for role, grants in LEAD_GRANTS.items():
            await engine.run_querystring(
                QueryString(
                    "UPDATE role SET permissions = permissions || "
                    "jsonb_build_object('lead', {}::jsonb) WHERE name = {} AND builtin",
                    json.dumps(grants),
                    role,
                )
            )

    manager.add_raw(grant_roles)
    return manager
