"""Database queries a web process issues, counted on the wire by ``CountingProxy``.

The web process under test connects to PostgreSQL through the proxy. Each
window's counts are divided by the number of pages, events or moves in it:
``statements`` are executed SQL statements (Bind of a prepared statement, or a
simple Query), ``round_trips`` are messages that wait for the server
(Sync or Query), and ``connection_resets`` are the queries asyncpg's pool
runs when a connection is returned to it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.pgproxy import CountingProxy

MESSAGE_KINDS = (
    "round_trip",
    "execute",
    "simple_query",
    "transaction_command",
    "connection_reset",
    "parse",
)


class QueryWindow:
    """What the proxy counted between ``start`` and ``stop``."""

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        self.messages: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()

    def start(self) -> None:
        self._messages, self._statements = self.proxy.snapshot()

    def stop(self) -> None:
        messages, statements = self.proxy.snapshot()
        self.messages = messages - self._messages
        self.statements = statements - self._statements

    def per(self, units: int, unit: str) -> dict[str, Any]:
        """Return the counts divided by ``units`` (pages, events or moves)."""
        statements = sum(self.statements.values())
        return {
            "unit": unit,
            "units": units,
            "statements_per_unit": round(statements / units, 2),
            **{
                f"{kind}_per_unit": round(self.messages[kind] / units, 2)
                for kind in MESSAGE_KINDS
            },
            "statements": {
                text: round(count / units, 2)
                for text, count in self.statements.most_common()
            },
        }
