"""Indexes for matching rules, listing runs and picking due timers."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:26:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add workflow indexes"

FORWARDS = [
    # Every change set looks up the enabled rules of its record types.
    "CREATE INDEX workflow_rule_type_idx ON workflow_rule "
    "(object_type, position, id) WHERE enabled",
    # A rule's page lists its latest runs; the rate limit counts a record's.
    "CREATE INDEX rule_run_rule_idx ON rule_run (rule, id DESC)",
    "CREATE INDEX rule_run_record_idx ON rule_run (record_type, record_id, created_at)",
    # One pending timer per rule and record; the cron picks the due ones.
    "CREATE UNIQUE INDEX workflow_timer_pending_idx ON workflow_timer "
    "(rule, record_type, record_id) WHERE fired_at IS NULL",
    "CREATE INDEX workflow_timer_due_idx ON workflow_timer (due_at) "
    "WHERE fired_at IS NULL",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
