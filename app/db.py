"""The PostgreSQL engine and the columns every business record shares."""

from __future__ import annotations

import os

from piccolo.columns import Integer, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.postgres import PostgresEngine


class Tracked:
    """Mixin for records people edit together.

    ``version`` grows by one on every write, so a writer can tell whether the
    record changed since it read it. ``external_key`` is ``source:id`` of the
    system a record was imported from, unique so that re-imports update it.
    """

    # Piccolo adds the primary key column itself; the annotation is for type
    # checkers only and creates no column.
    id: Serial
    created_at = Timestamptz(default=TimestamptzNow(), index=False)
    updated_at = Timestamptz(default=TimestamptzNow())
    version = Integer(default=1)
    external_key = Varchar(length=200, null=True, default=None, unique=True)
    # The version the last import wrote. A record whose version has moved
    # past it was edited in Switchboard, and a re-import leaves it alone.
    import_version = Integer(null=True, default=None)


def make_engine(database_url: str | None = None) -> PostgresEngine:
    """Build the engine from ``DATABASE_URL`` without connecting."""
    dsn = database_url or os.environ.get("DATABASE_URL", "")
    return PostgresEngine(config={"dsn": dsn}, log_queries=False)
