"""The api_key table: one row per key, holding the SHA-256 of its secret."""

from __future__ import annotations

from piccolo.columns import JSONB, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User


class ApiKey(Table, tablename="api_key"):
    """A user's API key. The secret itself is shown once and never stored."""

    id: Serial
    user = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    name = Varchar(length=120)
    # Hex SHA-256 of the secret part of the key.
    secret_hash = Varchar(length=64)
    # Object type -> "read" or "write", such as {"deal": "write"}.
    scopes = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    revoked_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    last_used_at = Timestamptz(null=True, default=None)
