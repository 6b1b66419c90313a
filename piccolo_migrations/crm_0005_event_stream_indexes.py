"""Indexes for replaying a stream and for the relay of unpublished events."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T13:39:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "Add event stream indexes"

FORWARDS = [
    # Replay reads one stream from a sequence number on.
    "CREATE UNIQUE INDEX event_stream_seq_idx ON event_stream (stream, seq)",
    "CREATE INDEX event_stream_event_idx ON event_stream (event)",
    # The relay looks only at events that are not on the bus yet.
    "CREATE INDEX event_unpublished_idx ON event (id) WHERE published_at IS NULL",
    "CREATE INDEX event_created_idx ON event (created_at)",
    # Events written before this migration count as published.
    "UPDATE event SET published_at = created_at",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, DESCRIPTION, FORWARDS)
