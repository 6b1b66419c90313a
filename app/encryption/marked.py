"""Fields that administrators marked sensitive, as this process last read them.

The ``sensitive_field`` table is the source of truth. Each process keeps a
copy, which ``refresh()`` reloads; web and worker processes call it every
``REFRESH_SECONDS`` (see ``keep_fresh``). A marked field's new values are
encrypted while its state is ``encrypting`` or ``encrypted``, and its
stored ciphertext is decrypted on every read until it is unmarked and the
decrypting job has finished.

Reads decrypt in the database engine (``decrypt_rows``), so every query,
whatever page, API call or job ran it, returns plaintext. A result column
is decrypted when its name, or the part of it after the last ``.`` or
``_``, is the name of a marked column, and the value is in the ``enc1``
format with the context of that column.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.encryption.keyring import DecryptionError, is_encrypted

logger = logging.getLogger(__name__)

ENCRYPTING, ENCRYPTED, DECRYPTING = "encrypting", "encrypted", "decrypting"
STATES = (ENCRYPTING, ENCRYPTED, DECRYPTING)
# How often web and worker processes reload the marked fields. A job that
# changes a field's state waits ``SETTLE_SECONDS`` before it touches stored
# values, so every process writes the new way by then.
REFRESH_SECONDS = 2.0
SETTLE_SECONDS = 2 * REFRESH_SECONDS + 1.0


@dataclass(frozen=True)
class Eligible:
    """A text column that administrators may mark sensitive."""

    table: str
    column: str
    label: str
    # What stops working in SQL once the field is encrypted, for the page.
    loses: str = ""


# The columns are TEXT in the database (``EncryptableText`` or ``Text``) so
# that ciphertext fits. Names, email addresses, statuses and other values
# that boards, matching, uniqueness or sorting rely on are left out.
ELIGIBLE: tuple[Eligible, ...] = (
    Eligible("account", "phone", "Account phone"),
    Eligible("account", "website", "Account website"),
    Eligible("account", "city", "Account city"),
    Eligible("contact", "title", "Contact job title"),
    Eligible("ticket", "description", "Ticket description"),
    Eligible("lead", "company", "Lead company", "the lead list's search"),
)
ELIGIBLE_BY_KEY = {(field.table, field.column): field for field in ELIGIBLE}
# Record types listed on the admin page, with no eligible field for deals:
# a deal's only text is its name, which boards, search and the forecast use.
RECORD_TYPES = ("account", "contact", "deal", "ticket", "lead")

# table -> {column: state}
_states: dict[str, dict[str, str]] = {}


def set_states(rows: Iterable[dict[str, Any]]) -> None:
    """Replace this process's copy with ``rows`` of the sensitive_field table."""
    states: dict[str, dict[str, str]] = {}
    for row in rows:
        states.setdefault(row["table_name"], {})[row["column_name"]] = row["state"]
    global _states
    _states = states


def state_of(table: str, column: str) -> str | None:
    return _states.get(table, {}).get(column)


def encrypting_columns(table: str) -> list[str]:
    """Return the columns of ``table`` whose new values are encrypted."""
    columns = _states.get(table, {})
    return [name for name, state in columns.items() if state != DECRYPTING]


def readable_contexts(name: str) -> list[str]:
    """Return ``table.column`` of every marked column a result key may name."""
    candidates = {name, name.rpartition(".")[2], name.rpartition("_")[2]}
    return [
        f"{table}.{column}"
        for table, columns in _states.items()
        for column in columns
        if column in candidates
    ]


def decrypt_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decrypt, in place, the values of marked columns in query results.

    A value that none of the candidate contexts decrypts is left as it is:
    it belongs to a column of the same name that is not marked, or to a
    fixed encrypted column that its reader decrypts itself.
    """
    if not _states or not rows:
        return rows
    from app.encryption.columns import get_keyring

    keyring = get_keyring()
    contexts: dict[str, list[str]] = {}
    for row in rows:
        for key, value in row.items():
            if not isinstance(value, str) or not is_encrypted(value):
                continue
            if key not in contexts:
                contexts[key] = readable_contexts(key)
            for context in contexts[key]:
                try:
                    row[key] = keyring.decrypt(value, context)
                except DecryptionError:
                    continue
                break
    return rows


async def refresh() -> None:
    """Reload the marked fields from the database."""
    from app.encryption.tables import SensitiveField

    rows = await SensitiveField.select(
        SensitiveField.table_name, SensitiveField.column_name, SensitiveField.state
    )
    set_states(rows)


async def keep_fresh(interval: float = REFRESH_SECONDS) -> None:
    """Reload the marked fields every ``interval`` seconds until cancelled."""
    while True:
        try:
            await refresh()
        except (OSError, ConnectionError) as error:
            logger.warning("reloading sensitive fields failed: %s", error)
        except Exception:
            logger.exception("reloading sensitive fields failed")
        await asyncio.sleep(interval)
