"""The audit log's hash chain: a canonical encoding of a row and its SHA-256.

Each row stores the hash of the row before it (``prev_hash``) and a hash of
its own fields together with that link. Changing a stored row breaks its own
hash, and removing one breaks the link of the row after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import msgspec

# The prev_hash of the first row.
GENESIS_HASH = "0" * 64
# Part of every hashed payload, so the encoding can change without
# invalidating rows written under an older one.
ENCODING_VERSION = 1

HASHED_FIELDS = (
    "id",
    "created_at",
    "actor_id",
    "client_address",
    "action",
    "record_type",
    "record_id",
    "changes",
    "details",
    "prev_hash",
)


def plain(value: Any) -> Any:
    """Convert ``value`` to the JSON types that survive a trip through jsonb.

    Decimals, dates and other scalars become strings (as msgspec encodes
    them), and so do floats. PostgreSQL's jsonb rewrites a float such as
    1e300 as a 301-digit integer, which would decode as an int and no longer
    match the hash. NUL characters, which jsonb rejects, become U+FFFD.
    """
    decoded = msgspec.json.decode(msgspec.json.encode(value, enc_hook=str))
    return _strings_for_floats(decoded)


def _strings_for_floats(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_strings_for_floats(item) for item in value]
    if isinstance(value, dict):
        return {
            key.replace("\x00", "\ufffd"): _strings_for_floats(item)
            for key, item in value.items()
        }
    return value


def canonical_timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def canonical_bytes(row: Mapping[str, Any]) -> bytes:
    """Encode the hashed fields of ``row`` as compact JSON with sorted keys.

    ``changes`` and ``details`` must already be plain JSON values, as
    ``plain()`` returns them or as they decode from the stored jsonb.
    """
    payload: list[Any] = [ENCODING_VERSION]
    for name in HASHED_FIELDS:
        value = row[name]
        if name == "created_at":
            value = canonical_timestamp(value)
        payload.append(value)
    return json.dumps(
        payload,
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    ).encode("utf-8")


def row_hash(row: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of the row's canonical encoding."""
    return hashlib.sha256(canonical_bytes(row)).hexdigest()
