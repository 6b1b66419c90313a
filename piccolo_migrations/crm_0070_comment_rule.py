"""The workflow rule that wrote an internal note, for the record's timeline.

A note keeps its rule's name when the rule is deleted. Notes written before
this migration get their rule from the ``comment.created`` event, which
names it while the event log keeps the event (EVENT_RETENTION_DAYS).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-05T05:70:00:000070"
VERSION = "1.38.0"
DESCRIPTION = "Record the workflow rule that wrote a comment"

FORWARDS = [
    "ALTER TABLE comment ADD COLUMN rule INTEGER "
    "REFERENCES workflow_rule (id) ON DELETE SET NULL",
    "ALTER TABLE comment ADD COLUMN rule_name VARCHAR(200) NOT NULL DEFAULT ''",
    "CREATE INDEX comment_rule_idx ON comment (rule) WHERE rule IS NOT NULL",
    """
    UPDATE comment AS c SET rule = r.id, rule_name = r.name
    FROM event AS e JOIN workflow_rule AS r ON r.id::text = e.changes ->> 'rule'
    WHERE e.kind = 'comment.created' AND e.record_type = 'comment'
      AND e.record_id = c.id AND c.author IS NULL
    """,
]

BACKWARDS = [
    "ALTER TABLE comment DROP COLUMN rule_name",
    "ALTER TABLE comment DROP COLUMN rule",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
