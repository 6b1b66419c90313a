"""Business-hours calendars, SLA policies, ticket SLA clocks and account tiers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:27:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add SLA calendars, policies and clocks"

FORWARDS = [
    "ALTER TABLE account ADD COLUMN tier VARCHAR(40) NOT NULL DEFAULT ''",
    """
    CREATE TABLE sla_calendar (
        id SERIAL PRIMARY KEY,
        name VARCHAR(120) NOT NULL UNIQUE,
        time_zone VARCHAR(64) NOT NULL DEFAULT 'UTC',
        hours JSONB NOT NULL DEFAULT '[]'::jsonb,
        holidays DATE[] NOT NULL DEFAULT ARRAY[]::date[],
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE sla_policy (
        id SERIAL PRIMARY KEY,
        name VARCHAR(120) NOT NULL UNIQUE,
        position INTEGER NOT NULL DEFAULT 0,
        active BOOLEAN NOT NULL DEFAULT true,
        calendar INTEGER NOT NULL REFERENCES sla_calendar (id) ON DELETE RESTRICT,
        team INTEGER REFERENCES team (id) ON DELETE CASCADE,
        account_tier VARCHAR(40) NOT NULL DEFAULT '',
        targets JSONB NOT NULL DEFAULT '{}'::jsonb,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE ticket_sla (
        id SERIAL PRIMARY KEY,
        ticket INTEGER NOT NULL UNIQUE REFERENCES ticket (id) ON DELETE CASCADE,
        policy INTEGER REFERENCES sla_policy (id) ON DELETE SET NULL,
        calendar INTEGER REFERENCES sla_calendar (id) ON DELETE SET NULL,
        priority VARCHAR(20) NOT NULL DEFAULT 'medium',
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        paused_at TIMESTAMPTZ,
        paused_seconds BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE sla_clock (
        id SERIAL PRIMARY KEY,
        ticket INTEGER NOT NULL REFERENCES ticket (id) ON DELETE CASCADE,
        metric VARCHAR(20) NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        paused_base BIGINT NOT NULL DEFAULT 0,
        target_seconds INTEGER NOT NULL,
        due_at TIMESTAMPTZ NOT NULL,
        warn_at TIMESTAMPTZ NOT NULL,
        stopped_at TIMESTAMPTZ,
        met BOOLEAN,
        breached_at TIMESTAMPTZ,
        warned_at TIMESTAMPTZ
    )
    """,
    # Cards show the running clock due soonest of each ticket.
    "CREATE INDEX sla_clock_ticket_idx ON sla_clock (ticket) WHERE stopped_at IS NULL",
    # The breach cron scans running clocks by due time and by warning time.
    "CREATE INDEX sla_clock_due_idx ON sla_clock (due_at) "
    "WHERE stopped_at IS NULL AND breached_at IS NULL",
    "CREATE INDEX sla_clock_warn_idx ON sla_clock (warn_at) "
    "WHERE stopped_at IS NULL AND warned_at IS NULL AND breached_at IS NULL",
    # The report counts clocks stopped or breached in a date range.
    "CREATE INDEX sla_clock_stopped_idx ON sla_clock (stopped_at)",
    "CREATE INDEX sla_clock_breached_idx ON sla_clock (breached_at)",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
