"""The event table, written in the same transaction as the change it records."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Array,
    BigInt,
    BigSerial,
    ForeignKey,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
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
    # Set once the event is on the bus; the relay publishes those left unset.
    published_at = Timestamptz(null=True, default=None)


class Stream(Table):
    """A stream pages subscribe to, and the last sequence number it gave out."""

    id: Serial
    name = Varchar(length=80, unique=True)
    last_seq = BigInt(default=0)


class EventStream(Table):
    """The position of an event in one of its streams; (stream, seq) is unique."""

    id = BigSerial(primary_key=True)
    stream = Varchar(length=80)
    seq = BigInt()
    event = ForeignKey(Event, on_delete=OnDelete.cascade)
