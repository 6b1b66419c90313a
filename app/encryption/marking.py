"""Marking fields sensitive and unmarking them, and the job that rewrites their values.

Marking stores the field as ``encrypting`` and queues ``sensitive_field_job``,
which waits until every process has reloaded the marked fields, encrypts
the stored plaintext in batches and sets the state to ``encrypted``.
Unmarking sets ``decrypting``, and the job decrypts the stored values and
deletes the row. Pages keep working throughout, because reads decrypt
whatever is ciphertext and pass plaintext through.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, cast

from piccolo.columns import Column

from app.encryption import marked
from app.encryption.columns import get_keyring
from app.encryption.keyring import ENVELOPE
from app.encryption.rotation import DEFAULT_BATCH, Progress, quote, rotate_column
from app.encryption.tables import SensitiveField
from app.errors import FieldError, NotFound
from app.events.service import change_set

logger = logging.getLogger(__name__)

# Passes over a column while edits saved during a pass leave values behind.
MAX_PASSES = 5
# Seconds without progress after which a field's job counts as lost.
STALE_SECONDS = 120.0


class JobSuperseded(Exception):
    """The field was marked or unmarked again while its job ran."""


@dataclass(frozen=True)
class FieldStatus:
    """One eligible field as the admin page shows it."""

    table: str
    column: str
    label: str
    loses: str
    state: str | None
    done: int
    total: int
    error: str

    @property
    def sensitive(self) -> bool:
        return self.state in (marked.ENCRYPTING, marked.ENCRYPTED)

    @property
    def running(self) -> bool:
        return self.state in (marked.ENCRYPTING, marked.DECRYPTING)


async def list_fields() -> dict[str, list[FieldStatus]]:
    """Return every eligible field by record type, with its state and progress."""
    rows = await SensitiveField.select()
    by_key = {(row["table_name"], row["column_name"]): row for row in rows}
    fields: dict[str, list[FieldStatus]] = {name: [] for name in marked.RECORD_TYPES}
    for eligible in marked.ELIGIBLE:
        row = by_key.get((eligible.table, eligible.column), {})
        fields[eligible.table].append(
            FieldStatus(
                table=eligible.table,
                column=eligible.column,
                label=eligible.label,
                loses=eligible.loses,
                state=row.get("state"),
                done=row.get("done", 0),
                total=row.get("total", 0),
                error=row.get("error", ""),
            )
        )
    return fields


def parse_field(value: str) -> marked.Eligible:
    """Read ``table.column``. Raises FieldError for a field that may not be marked."""
    table, _, column = value.partition(".")
    eligible = marked.ELIGIBLE_BY_KEY.get((table, column))
    if eligible is None:
        names = ", ".join(f"{f.table}.{f.column}" for f in marked.ELIGIBLE)
        raise FieldError("field", value, f"may not be marked sensitive; use {names}")
    return eligible


async def set_sensitive(
    field_name: str, sensitive: bool, actor_id: int | None
) -> str | None:
    """Mark or unmark ``field_name`` (``table.column``) and return the new state.

    Returns None when the field already was as asked, so no job is needed.
    Raises FieldError for a field that may not be marked.
    """
    eligible = parse_field(field_name)
    requested = marked.ENCRYPTING if sensitive else marked.DECRYPTING
    async with change_set(actor_id) as changes:
        row = (
            await SensitiveField.select()
            .where(
                (SensitiveField.table_name == eligible.table)
                & (SensitiveField.column_name == eligible.column)
            )
            .lock_rows("NO KEY UPDATE")
            .first()
        )
        old_state = row["state"] if row else None
        if sensitive and old_state in (marked.ENCRYPTING, marked.ENCRYPTED):
            return None
        if not sensitive and old_state in (None, marked.DECRYPTING):
            return None
        values: dict[str, Any] = {
            "state": requested,
            "done": 0,
            "total": 0,
            "error": "",
            "changed_by": actor_id,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        if row is None:
            inserted = await SensitiveField.insert(
                SensitiveField(
                    table_name=eligible.table, column_name=eligible.column, **values
                )
            ).returning(SensitiveField.id)
            field_id = inserted[0]["id"]
        else:
            field_id = row["id"]
            await SensitiveField.update(cast("dict[Column | str, Any]", values)).where(
                SensitiveField.id == field_id
            )
        changes.add(
            "sensitive_field.updated",
            "sensitive_field",
            field_id,
            [],
            {"field": field_name, "state": [old_state, requested]},
        )
    await marked.refresh()
    logger.info(
        "sensitive field %s field=%s field_id=%s user_id=%s",
        "marked" if sensitive else "unmarked",
        field_name,
        field_id,
        actor_id,
    )
    return requested


async def field_row(table: str, column: str) -> dict[str, Any]:
    row = (
        await SensitiveField.select()
        .where(
            (SensitiveField.table_name == table)
            & (SensitiveField.column_name == column)
        )
        .first()
    )
    if row is None:
        raise NotFound("sensitive_field", f"{table}.{column}")
    return row


async def report(field_id: int, state: str, progress: Progress) -> None:
    """Store a batch's progress, or raise JobSuperseded if the state changed."""
    rows = await SensitiveField.raw(
        "UPDATE sensitive_field SET done = {}, total = {}, updated_at = now() "
        "WHERE id = {} AND state = {} RETURNING id",
        progress.done,
        progress.total,
        field_id,
        state,
    )
    if not rows:
        raise JobSuperseded


async def count_encrypted(table: str, column: str) -> int:
    name = quote(column)
    rows = await SensitiveField.raw(
        f"SELECT count(*) AS n FROM {quote(table)} WHERE starts_with({name}, {{}})",
        ENVELOPE + ":",
    )
    return int(rows[0]["n"])


async def decrypt_column(
    table_name: str,
    column: str,
    field_id: int,
    batch_size: int = DEFAULT_BATCH,
) -> int:
    """Replace a column's ciphertext with plaintext in batches; return the count.

    Like ``rotate_column``, each UPDATE replaces a value only if it is still
    the one read, so an edit saved meanwhile is kept.
    """
    keyring = get_keyring()
    context = f"{table_name}.{column}"
    tablename = quote(table_name)
    name = quote(column)
    total = await count_encrypted(table_name, column)
    done = 0
    last_id = 0
    await report(field_id, marked.DECRYPTING, Progress(context, done, total))
    while True:
        # The alias keeps the engine from decrypting the values it reads.
        rows = await SensitiveField.raw(
            f"SELECT id, {name} AS stored FROM {tablename} "
            f"WHERE id > {{}} AND starts_with({name}, {{}}) ORDER BY id LIMIT {{}}",
            last_id,
            ENVELOPE + ":",
            batch_size,
        )
        if not rows:
            break
        ids = [row["id"] for row in rows]
        old_values = [row["stored"] for row in rows]
        new_values = [keyring.decrypt(value, context) for value in old_values]
        updated = await SensitiveField.raw(
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
        await report(field_id, marked.DECRYPTING, Progress(context, done, total))
    return done


async def run_field_job(
    table: str,
    column: str,
    settle_seconds: float = marked.SETTLE_SECONDS,
    batch_size: int = DEFAULT_BATCH,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Encrypt or decrypt a field's stored values as its state asks.

    Waits ``settle_seconds`` first, so every process writes the new way
    before the passes start. Returns the state reached and the values
    rewritten. A job whose field was marked or unmarked again stops at its
    next batch and leaves the field to the newer job.
    """
    row = await field_row(table, column)
    field_id = row["id"]
    state = row["state"]
    context = f"{table}.{column}"
    logger.info(
        "sensitive field job started field=%s field_id=%s state=%s job_id=%s",
        context,
        field_id,
        state,
        job_id,
    )
    await asyncio.sleep(settle_seconds)
    from app.piccolo_app import TABLES

    tables = {t._meta.tablename: t for t in TABLES}
    rewritten = 0
    try:
        for _ in range(MAX_PASSES):
            if state == marked.ENCRYPTING:

                async def on_progress(progress: Progress) -> None:
                    await report(field_id, state, progress)

                count = await rotate_column(
                    tables[table], column, get_keyring(), batch_size, on_progress
                )
                remaining = await count_plaintext(table, column)
            elif state == marked.DECRYPTING:
                count = await decrypt_column(table, column, field_id, batch_size)
                remaining = await count_encrypted(table, column)
            else:
                return {"state": state, "rewritten": 0}
            rewritten += count
            if not remaining:
                break
    except JobSuperseded:
        logger.info(
            "sensitive field job superseded field=%s field_id=%s rewritten=%d "
            "job_id=%s",
            context,
            field_id,
            rewritten,
            job_id,
        )
        return {"state": "superseded", "rewritten": rewritten}
    except Exception as error:
        await SensitiveField.update(
            {SensitiveField.error: f"{type(error).__name__}: {error}"}
        ).where((SensitiveField.id == field_id) & (SensitiveField.state == state))
        logger.exception(
            "sensitive field job failed field=%s field_id=%s job_id=%s",
            context,
            field_id,
            job_id,
        )
        raise
    final = await finish(field_id, state, remaining)
    logger.info(
        "sensitive field job finished field=%s field_id=%s state=%s "
        "rewritten=%d left=%d job_id=%s",
        context,
        field_id,
        final,
        rewritten,
        remaining,
        job_id,
    )
    return {"state": final, "rewritten": rewritten, "left": remaining}


async def stalled_fields(stale_seconds: float = STALE_SECONDS) -> list[dict[str, Any]]:
    """Return the fields whose job has not reported for ``stale_seconds``.

    A job reports after every batch, so such a field's job was lost with a
    worker that stopped, or with the queue.
    """
    return await SensitiveField.raw(
        "SELECT id, table_name, column_name, state, updated_at "
        "FROM sensitive_field WHERE state IN ({}, {}) "
        "AND updated_at < now() - make_interval(secs => {}) ORDER BY id",
        marked.ENCRYPTING,
        marked.DECRYPTING,
        stale_seconds,
    )


async def count_plaintext(table: str, column: str) -> int:
    name = quote(column)
    rows = await SensitiveField.raw(
        f"SELECT count(*) AS n FROM {quote(table)} WHERE {name} IS NOT NULL "
        f"AND {name} <> '' AND NOT starts_with({name}, {{}})",
        ENVELOPE + ":",
    )
    return int(rows[0]["n"])


async def finish(field_id: int, state: str, remaining: int) -> str:
    """Record the end of a job unless the field changed state meanwhile."""
    if remaining:
        await SensitiveField.update(
            {SensitiveField.error: f"{remaining} values were left after every pass"}
        ).where((SensitiveField.id == field_id) & (SensitiveField.state == state))
        return state
    if state == marked.ENCRYPTING:
        await SensitiveField.update(
            {
                SensitiveField.state: marked.ENCRYPTED,
                SensitiveField.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where((SensitiveField.id == field_id) & (SensitiveField.state == state))
        final = marked.ENCRYPTED
    else:
        await SensitiveField.delete().where(
            (SensitiveField.id == field_id) & (SensitiveField.state == state)
        )
        final = "plaintext"
    await marked.refresh()
    return final
