"""Assignment policies per team, agent capacities and away status."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:27:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add assignment policies, capacities and agent status"

FORWARDS = [
    """
    CREATE TABLE assignment_policy (
        id SERIAL PRIMARY KEY,
        team INTEGER NOT NULL UNIQUE REFERENCES team (id) ON DELETE CASCADE,
        strategy VARCHAR(20) NOT NULL DEFAULT 'round_robin',
        require_online BOOLEAN NOT NULL DEFAULT false,
        default_capacity INTEGER NOT NULL DEFAULT 0,
        last_user INTEGER,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE assignment_capacity (
        id SERIAL PRIMARY KEY,
        team INTEGER NOT NULL REFERENCES team (id) ON DELETE CASCADE,
        "user" INTEGER NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
        capacity INTEGER NOT NULL DEFAULT 0,
        UNIQUE (team, "user")
    )
    """,
    """
    CREATE TABLE agent_status (
        id SERIAL PRIMARY KEY,
        "user" INTEGER NOT NULL UNIQUE REFERENCES app_user (id) ON DELETE CASCADE,
        away BOOLEAN NOT NULL DEFAULT false,
        changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    # Least busy and capacity count each agent's open tickets.
    "CREATE INDEX ticket_assignee_status_idx ON ticket (assignee, status)",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
