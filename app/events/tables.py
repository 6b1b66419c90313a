"""The event table, written in the same transaction as the change it records."""

from __future__ import annotations

from piccolo.columns import JSONB, Array, BigSerial, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Event(Table):
    id = BigSerial(primary_key=True)
    kind = Varchar(length=60)
    # The streams a page can subscribe to, such as "pipeline:3" or "ticket:12".
    topics = Array(base_column=Varchar(length=80))
    record_type = Varchar(length=40)
    record_id = Integer()
    actor_id = Integer(null=True, default=None)
    # {"field": [before, after], ...} for updates; the new values for creates.
    changes = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
