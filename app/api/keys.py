"""Creating, listing, revoking and checking API keys.

A key reads ``sb_<id>_<secret>``: the id finds the row, and the secret, 32
random bytes in hex, is compared with the stored SHA-256 in constant time.
Only the hash is stored, so a key is shown once, when it is created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis

from app import fields
from app.api.tables import ApiKey
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.fields import MAX_ID
from app.pagination import Page, PageRequest

logger = logging.getLogger(__name__)

KeyScope = Literal["read", "write"]
PREFIX = "sb"
SECRET_BYTES = 32
# The object types a key may be scoped to.
SCOPED_TYPES = (
    "account",
    "contact",
    "deal",
    "ticket",
    "lead",
    "comment",
    "campaign",
    # Workflow rules: their routes also need an administrator's key.
    "workflow_rule",
)
KEY_SCOPES: tuple[KeyScope, ...] = ("read", "write")
MAX_NAME = 120
# Keys expire at most this many days after creation, if they expire at all.
MAX_EXPIRY_DAYS = 3650
# The last-used time is written at most once per key in this many seconds.
LAST_USED_INTERVAL = 60
TOKEN = re.compile(rf"{PREFIX}_(?P<id>[0-9]{{1,10}})_(?P<secret>[0-9a-f]{{64}})")


@dataclass(frozen=True)
class IssuedKey:
    """A new key's id and its full text, which is shown once."""

    id: int
    token: str


@dataclass(frozen=True)
class KeyHolder:
    """A checked key: its id, its user, and what it may read or write."""

    id: int
    user_id: int
    scopes: dict[str, KeyScope]

    def allows(self, object_type: str, action: str) -> bool:
        """Return True when the key covers ``action`` on ``object_type``.

        Reading needs either scope, and create, edit and delete need "write".
        """
        granted = self.scopes.get(object_type)
        if granted is None:
            return False
        return action == "read" or granted == "write"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: dict[str, str]) -> dict[str, KeyScope]:
    """Check a key's scopes, such as ``{"deal": "write", "ticket": "read"}``.

    Raises FieldError naming ``scopes.<type>`` for an unknown object type or
    scope, and for a key without any scope.
    """
    scopes: dict[str, KeyScope] = {}
    for object_type, scope in raw.items():
        if object_type not in SCOPED_TYPES:
            raise FieldError(
                f"scopes.{object_type}",
                object_type,
                f"is not an object type; use one of {', '.join(SCOPED_TYPES)}",
            )
        if scope == "":
            continue
        if scope not in KEY_SCOPES:
            raise FieldError(
                f"scopes.{object_type}", scope, "must be read, write or empty"
            )
        scopes[object_type] = "write" if scope == "write" else "read"
    if not scopes:
        raise FieldError("scopes", "", "must grant read or write on some object type")
    return scopes


def parse_expiry(raw: str | None, today: dt.date) -> dt.datetime | None:
    """Read an expiry date (YYYY-MM-DD); the key stops working at its start, UTC.

    Empty means the key does not expire.
    """
    value = (raw or "").strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise FieldError(
            "expires", raw, "is not a date in the form YYYY-MM-DD"
        ) from None
    if day <= today:
        raise FieldError("expires", raw, "must be after today")
    if day > today + dt.timedelta(days=MAX_EXPIRY_DAYS):
        raise FieldError(
            "expires", raw, f"must be within {MAX_EXPIRY_DAYS} days of today"
        )
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


async def create_key(
    user_id: int,
    name: str,
    scopes: dict[str, KeyScope],
    expires_at: dt.datetime | None,
) -> IssuedKey:
    """Store a new key of the user and return its text, which is not kept."""
    name = fields.text("name", name, required=True, max_length=MAX_NAME)

    secret = secrets.token_hex(SECRET_BYTES)
    async with change_set(user_id) as changes:
        rows = await ApiKey.insert(
            ApiKey(
                user=user_id,
                name=name,
                secret_hash=hash_secret(secret),
                scopes=msgspec.json.encode(scopes).decode(),
                expires_at=expires_at,
            )
        ).returning(ApiKey.id)
        key_id = rows[0]["id"]
        changes.add(
            "api_key.created",
            "api_key",
            key_id,
            [],
            {"user": [None, user_id], "name": [None, name], "scopes": [None, scopes]},
        )

    logger.info("api key created key_id=%s user_id=%s", key_id, user_id)
    return IssuedKey(id=key_id, token=f"{PREFIX}_{key_id}_{secret}")


async def list_keys(user_id: int, paging: PageRequest) -> Page[dict[str, Any]]:
    """List a user's keys, newest first, without anything secret."""
    total = await ApiKey.count().where(ApiKey.user == user_id)
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.scopes,
            ApiKey.created_at,
            ApiKey.expires_at,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
        )
        .where(ApiKey.user == user_id)
        .order_by(ApiKey.id, ascending=False)
        .limit(paging.size)
        .offset(paging.offset)
    )
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        row["scopes"] = decode_scopes(row["scopes"])
        row["expired"] = row["expires_at"] is not None and row["expires_at"] <= now
        row["active"] = row["revoked_at"] is None and not row["expired"]
    return Page(rows=rows, total=total, paging=paging)


async def revoke_key(key_id: int, user_id: int | None, actor_id: int) -> bool:
    """Revoke a key at once; ``user_id`` None lets an admin revoke anyone's.

    Raises NotFound when the key does not exist or is not the user's.
    Returns False when it was revoked already.
    """
    row = (
        await ApiKey.select(ApiKey.user, ApiKey.revoked_at)
        .where(ApiKey.id == key_id)
        .first()
    )
    if row is None or (user_id is not None and row["user"] != user_id):
        raise NotFound("API key", key_id)
    if row["revoked_at"] is not None:
        return False

    async with change_set(actor_id) as changes:
        await ApiKey.update(
            {ApiKey.revoked_at: dt.datetime.now(dt.UTC), ApiKey.revoked_by: actor_id}
        ).where((ApiKey.id == key_id) & ApiKey.revoked_at.is_null())
        changes.add(
            "api_key.revoked", "api_key", key_id, [], {"user": [row["user"], None]}
        )
    logger.info(
        "api key revoked key_id=%s user_id=%s by user_id=%s",
        key_id,
        row["user"],
        actor_id,
    )
    return True


def decode_scopes(raw: Any) -> dict[str, KeyScope]:
    scopes = msgspec.json.decode(raw) if isinstance(raw, str | bytes) else raw
    return {
        object_type: "write" if scope == "write" else "read"
        for object_type, scope in (scopes or {}).items()
        if object_type in SCOPED_TYPES
    }


async def check_key(token: str) -> KeyHolder | None:
    """Return the holder of a valid key, or None.

    Malformed, unknown, wrong, revoked and expired keys all return None,
    and the reason is logged with the key id.
    """
    match = TOKEN.fullmatch(token)
    if match is None:
        logger.info("api key rejected: malformed")
        return None
    key_id = int(match["id"])
    if not 0 < key_id <= MAX_ID:
        logger.info("api key rejected: malformed")
        return None
    row = (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.user,
            ApiKey.secret_hash,
            ApiKey.scopes,
            ApiKey.expires_at,
            ApiKey.revoked_at,
        )
        .where(ApiKey.id == key_id)
        .first()
    )
    # The hash is compared even for an unknown id, so both take as long.
    stored = row["secret_hash"] if row else "0" * 64
    matches = hmac.compare_digest(stored, hash_secret(match["secret"]))
    if row is None or not matches:
        logger.info("api key rejected: unknown or wrong secret key_id=%s", key_id)
        return None
    if row["revoked_at"] is not None:
        logger.info("api key rejected: revoked key_id=%s", key_id)
        return None
    if row["expires_at"] is not None and row["expires_at"] <= dt.datetime.now(dt.UTC):
        logger.info("api key rejected: expired key_id=%s", key_id)
        return None
    return KeyHolder(
        id=row["id"], user_id=row["user"], scopes=decode_scopes(row["scopes"])
    )


async def mark_used(redis: Redis, prefix: str, key_id: int) -> None:
    """Record that the key was used, writing the row at most once a minute."""
    first = await redis.set(
        f"{prefix}api-key-used:{key_id}", b"1", nx=True, ex=LAST_USED_INTERVAL
    )
    if first:
        await ApiKey.update({ApiKey.last_used_at: dt.datetime.now(dt.UTC)}).where(
            ApiKey.id == key_id
        )
