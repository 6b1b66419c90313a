"""The PostgreSQL engine and the columns every business record shares."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from piccolo.columns import Integer, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.postgres import PostgresEngine

logger = logging.getLogger(__name__)


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


class Engine(PostgresEngine):
    """Piccolo's PostgreSQL engine, decrypting marked sensitive fields in results.

    Every query's rows pass through here as dicts, whether a select, an
    objects query or a raw query ran them, so readers of a marked column get
    plaintext unless the query renames it (see ``app.encryption.marked``).
    """

    def transform_response_to_dicts(self, results: Any) -> list[dict[str, Any]]:
        from app.encryption.marked import decrypt_rows

        return decrypt_rows(super().transform_response_to_dicts(results))


def make_engine(database_url: str | None = None) -> PostgresEngine:
    """Build the engine from ``DATABASE_URL`` without connecting."""
    dsn = database_url or os.environ.get("DATABASE_URL", "")
    return Engine(config={"dsn": dsn}, log_queries=False)


async def keep_session_state(connection: Any) -> None:
    """Return a connection to the pool without asyncpg's reset query.

    asyncpg rolls back an open transaction either way. Its default reset
    then sends ``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL`` and
    ``pg_advisory_unlock_all()``, one more round trip after every query.
    This application keeps no session state: it sets no settings outside
    a transaction, listens to nothing, holds no cursors and takes only
    transaction-level advisory locks.
    """


async def start_pool(engine: PostgresEngine, min_size: int, max_size: int) -> None:
    await engine.start_connection_pool(
        min_size=min_size, max_size=max_size, reset=keep_session_state
    )


# Seconds a stopping process waits for busy database connections.
CLOSE_WAIT = 5.0


async def close_pool(engine: PostgresEngine) -> None:
    """Close the pool, waiting at most ``CLOSE_WAIT`` seconds for busy connections.

    asyncpg's close waits until every connection is back in the pool. A job
    or request cancelled in the middle of a query can hold one for much
    longer, and a stopping process must not hang on it. PostgreSQL rolls
    back whatever such a connection had open.
    """
    pool = engine.pool
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), CLOSE_WAIT)
    except TimeoutError:
        logger.warning("database connections still busy at shutdown, terminated")
        pool.terminate()
    engine.pool = None
