"""Field-level merge of concurrent edits.

Every edit carries, for each field, the value the editor started from (its
base) and the value they want. Under a row lock the service compares the
base with what is stored now:

- wanted equals base: the editor left the field alone, nothing to do;
- stored equals base: no one else changed the field, the edit applies;
- stored equals the wanted value: someone made the same change, nothing to do;
- otherwise someone else changed it meanwhile: a conflict, not applied.

So two people editing different fields of one record both succeed, and
nobody's change to a field is overwritten by someone who never saw it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from piccolo.columns import Column
from piccolo.table import Table

from app.encryption.columns import decrypt_row, encrypt_values, encrypted_columns
from app.errors import NotFound, VersionMismatch
from app.events.service import ChangeSet
from app.events.tables import Event

# Stands in the event log for the old and new value of an encrypted column.
REDACTED = "[encrypted]"


@dataclass(frozen=True)
class Edit:
    base: Any
    new: Any


def changed_values(edits: Mapping[str, Edit]) -> dict[str, Any]:
    """Return the new value of each edit whose value differs from its base."""
    return {name: edit.new for name, edit in edits.items() if edit.new != edit.base}


@dataclass(frozen=True)
class Conflict:
    field: str
    mine: Any
    theirs: Any
    changed_by: str | None


@dataclass
class MergeResult:
    before: dict[str, Any]
    after: dict[str, Any]
    applied: dict[str, list[Any]] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


async def merge_edit(
    table: type[Table],
    record_id: int,
    edits: dict[str, Edit],
    changes: ChangeSet,
    also_set: dict[str, dict[str, Any]] | None = None,
    expected_version: int | None = None,
) -> MergeResult:
    """Apply the non-conflicting ``edits`` to one row and report the conflicts.

    Must run inside ``change_set()``. ``also_set`` maps a field to further
    values written when that field's edit applies (``{"stage":
    {"stage_entered_at": now}}``). The caller records the event, from
    ``applied``, which maps each changed field to [before, after]. Encrypted
    columns are compared as plaintext, written as ciphertext, and appear in
    ``applied`` as ``[REDACTED, REDACTED]`` so that events never hold them.
    With ``expected_version``, raises VersionMismatch under the row lock when
    the row is at another version, so the caller's transaction writes nothing.
    """
    before = (
        await table.select()
        .where(table._meta.primary_key == record_id)
        .lock_rows("NO KEY UPDATE")
        .first()
    )
    if before is None:
        raise NotFound(table._meta.tablename, record_id)
    if expected_version is not None and before["version"] != expected_version:
        raise VersionMismatch(
            table._meta.tablename, record_id, expected_version, before["version"]
        )
    decrypt_row(table, before)
    sensitive = set(encrypted_columns(table))

    result = MergeResult(before=before, after=dict(before))
    updates: dict[str, Any] = {}
    for name, edit in edits.items():
        stored = before[name]
        if edit.new == edit.base or stored == edit.new:
            # The editor left the field alone, or it already contains their value.
            continue
        if stored == edit.base:
            updates[name] = edit.new
            updates.update((also_set or {}).get(name, {}))
            if name in sensitive:
                result.applied[name] = [REDACTED, REDACTED]
            else:
                result.applied[name] = [stored, edit.new]
        else:
            result.conflicts.append(
                Conflict(
                    field=name,
                    mine=edit.new,
                    theirs=stored,
                    changed_by=await last_editor(table, record_id, name),
                )
            )

    if updates:
        updates["version"] = before["version"] + 1
        updates["updated_at"] = dt.datetime.now(dt.UTC)
        stored_values = encrypt_values(table, updates)
        await table.update(cast("dict[Column | str, Any]", stored_values)).where(
            table._meta.primary_key == record_id
        )
        result.after.update(updates)
    return result


async def last_editor(
    table: type[Table], record_id: int, field_name: str
) -> str | None:
    """Return the name of the user who last changed ``field_name`` of the record."""
    rows = await Event.raw(
        "SELECT u.name FROM event e JOIN app_user u ON u.id = e.actor_id "
        "WHERE e.record_type = {} AND e.record_id = {} AND e.changes ? {} "
        "ORDER BY e.id DESC LIMIT 1",
        table._meta.tablename,
        record_id,
        field_name,
    )
    return rows[0]["name"] if rows else None
