"""Re-encrypt stored values under the current key, in batches, while pages serve.

Each batch is one UPDATE that replaces a value only if it is still the one
read, so an edit saved meanwhile is never overwritten. Re-encryption changes
no plaintext, so it leaves ``version`` and ``updated_at`` alone and writes no
event. Web processes must already know the current key before a rotation
starts, or their edits keep writing values under the old one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from piccolo.table import Table

from app.encryption import marked
from app.encryption.columns import encrypted_columns, get_keyring
from app.encryption.keyring import ENVELOPE, Keyring, is_encrypted

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 500
# A value that an edit rewrote during a pass is looked at again in the next.
MAX_PASSES = 3
PLAINTEXT = "(plaintext)"


@dataclass(frozen=True)
class Progress:
    column: str
    done: int
    total: int


ProgressCallback = Callable[[Progress], Awaitable[None]]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def encrypted_tables() -> list[type[Table]]:
    from app.piccolo_app import TABLES

    return [table for table in TABLES if encrypted_columns(table)]


def stale_condition(column: str) -> str:
    """SQL that is true for a value not yet under the key given as argument."""
    name = quote(column)
    return f"{name} IS NOT NULL AND {name} <> '' AND NOT starts_with({name}, {{}})"


async def count_stale(table: type[Table], column: str, keyring: Keyring) -> int:
    rows = await table.raw(
        f"SELECT count(*) AS n FROM {quote(table._meta.tablename)} "
        f"WHERE {stale_condition(column)}",
        current_prefix(keyring),
    )
    return int(rows[0]["n"])


def current_prefix(keyring: Keyring) -> str:
    return f"{ENVELOPE}:{keyring.current_id}:"


def plaintext(keyring: Keyring, value: str, label: str) -> str:
    return keyring.decrypt(value, label) if is_encrypted(value) else value


async def rotate_column(
    table: type[Table],
    column: str,
    keyring: Keyring,
    batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Re-encrypt one column's values that are not under the current key.

    Plaintext written before the column was encrypted is encrypted too.
    Returns how many values were rewritten. Raises ``DecryptionError`` for
    a value that no configured key decrypts, leaving later rows as they were.
    """
    label = f"{table._meta.tablename}.{column}"
    tablename = quote(table._meta.tablename)
    name = quote(column)
    prefix = current_prefix(keyring)
    total = await count_stale(table, column, keyring)
    done = 0
    last_id = 0
    if on_progress is not None:
        await on_progress(Progress(label, done, total))

    while True:
        rows = await table.raw(
            f"SELECT id, {name} AS value FROM {tablename} "
            f"WHERE id > {{}} AND {stale_condition(column)} ORDER BY id LIMIT {{}}",
            last_id,
            prefix,
            batch_size,
        )
        if not rows:
            break
        ids = [row["id"] for row in rows]
        old_values = [row["value"] for row in rows]
        new_values = [
            keyring.encrypt(plaintext(keyring, value, label), label)
            for value in old_values
        ]
        updated = await table.raw(
            f"UPDATE {tablename} AS t SET {name} = u.new_value "
            "FROM unnest({}::integer[], {}::text[], {}::text[]) "
            "AS u(id, old_value, new_value) "
            f"WHERE t.id = u.id AND t.{name} = u.old_value RETURNING t.id",
            ids,
            old_values,
            new_values,
        )
        done += len(updated)
        last_id = ids[-1]
        if on_progress is not None:
            await on_progress(Progress(label, done, total))
    return done


async def rotate_all(
    keyring: Keyring | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Re-encrypt every encrypted column; return the values left per column.

    A column is passed over again while edits leave values behind, at most
    ``MAX_PASSES`` times. A value left after that was written by a process
    whose current key is still the old one.
    """
    keyring = keyring or get_keyring()
    # The fields administrators marked are rotated too, as the table lists them.
    await marked.refresh()
    left: dict[str, int] = {}
    for table in encrypted_tables():
        for column in encrypted_columns(table):
            label = f"{table._meta.tablename}.{column}"
            logger.info("re-encrypting column=%s key_id=%s", label, keyring.current_id)
            rewritten = 0
            for _ in range(MAX_PASSES):
                rewritten += await rotate_column(
                    table, column, keyring, batch_size, on_progress
                )
                remaining = await count_stale(table, column, keyring)
                if not remaining:
                    break
            left[label] = remaining
            logger.info(
                "re-encrypted column=%s rewritten=%d left=%d key_id=%s",
                label,
                rewritten,
                remaining,
                keyring.current_id,
            )
    return left


async def count_by_key() -> dict[str, dict[str, int]]:
    """Count each encrypted column's non-empty values by the id of their key."""
    counts: dict[str, dict[str, int]] = {}
    await marked.refresh()
    for table in encrypted_tables():
        for column in encrypted_columns(table):
            name = quote(column)
            rows = await table.raw(
                f"SELECT CASE WHEN starts_with({name}, {{}}) "
                f"THEN split_part({name}, ':', 2) ELSE {{}} END AS key_id, "
                f"count(*) AS n FROM {quote(table._meta.tablename)} "
                f"WHERE {name} IS NOT NULL AND {name} <> '' GROUP BY 1 ORDER BY 1",
                ENVELOPE + ":",
                PLAINTEXT,
            )
            label = f"{table._meta.tablename}.{column}"
            counts[label] = {row["key_id"]: int(row["n"]) for row in rows}
    return counts
