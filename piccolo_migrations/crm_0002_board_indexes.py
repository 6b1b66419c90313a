"""Indexes for the board and list queries, and checks Piccolo cannot declare."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T13:08:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add board indexes and checks"

FORWARDS = [
    # Pipeline board: one column is (pipeline, stage), newest arrival first.
    "CREATE INDEX deal_board_idx ON deal "
    "(pipeline, stage, stage_entered_at DESC, id DESC)",
    "CREATE INDEX deal_owner_idx ON deal (owner)",
    "CREATE INDEX deal_team_idx ON deal (team)",
    "CREATE INDEX deal_account_idx ON deal (account)",
    "CREATE INDEX stage_pipeline_idx ON stage (pipeline, position)",
    # Ticket board: one column is a status, most recent change first.
    "CREATE INDEX ticket_board_idx ON ticket (status, status_changed_at DESC, id DESC)",
    "CREATE INDEX ticket_assignee_idx ON ticket (assignee)",
    "CREATE INDEX ticket_team_idx ON ticket (team)",
    "CREATE INDEX ticket_requester_idx ON ticket (requester)",
    "CREATE INDEX ticket_account_idx ON ticket (account)",
    "CREATE INDEX contact_account_idx ON contact (account)",
    "CREATE INDEX comment_deal_idx ON comment (deal, created_at) "
    "WHERE deal IS NOT NULL",
    "CREATE INDEX comment_ticket_idx ON comment (ticket, created_at) "
    "WHERE ticket IS NOT NULL",
    "CREATE INDEX event_record_idx ON event (record_type, record_id, id)",
    "CREATE UNIQUE INDEX stage_name_idx ON stage (pipeline, name)",
    'CREATE UNIQUE INDEX team_member_idx ON team_member (team, "user")',
    "ALTER TABLE comment ADD CONSTRAINT comment_parent_check "
    "CHECK ((deal IS NULL) <> (ticket IS NULL))",
    "ALTER TABLE stage ADD CONSTRAINT stage_kind_check "
    "CHECK (kind IN ('open', 'won', 'lost'))",
    "ALTER TABLE stage ADD CONSTRAINT stage_probability_check "
    "CHECK (probability BETWEEN 0 AND 100)",
    "ALTER TABLE ticket ADD CONSTRAINT ticket_status_check "
    "CHECK (status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed'))",
    "ALTER TABLE ticket ADD CONSTRAINT ticket_priority_check "
    "CHECK (priority IN ('low', 'medium', 'high', 'urgent'))",
    "ALTER TABLE deal ADD CONSTRAINT deal_amount_check "
    "CHECK (amount IS NULL OR amount >= 0)",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
