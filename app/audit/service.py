"""Appending to the audit log, in the same transaction as what a row records.

``change_set()`` calls ``audit_changes()`` for the events it writes, so
every create, update and delete of an audited record type gets a row that
commits or rolls back with the change. ``record()`` and ``record_export()``
are for what is not a change to a record: sign-ins and exports.

Appends are serialised by a transaction-level advisory lock taken just
before the insert and held until commit. Each row contains the hash of the
row before it, so the log is one chain in id order. An audited transaction
therefore waits at its insert until the one that appended before it ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from piccolo.table import Table

from app.access.tables import Role
from app.accounts.tables import Account
from app.api.tables import ApiKey
from app.audit.chain import GENESIS_HASH, plain, row_hash
from app.audit.context import current_client_address
from app.audit.tables import AuditLog
from app.auth.tables import Team, User
from app.campaigns.tables import Campaign
from app.comments.tables import Comment
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Stage
from app.email.tables import ReplyTemplate
from app.encryption.columns import encrypted_columns
from app.errors import FieldError
from app.imports.tables import ImportJob, ImportMapping
from app.leads.tables import Lead
from app.scoring.tables import ScoringRule
from app.sla.tables import BusinessCalendar, SlaPolicy
from app.tickets.tables import Ticket
from app.webhooks.tables import WebhookEndpoint

logger = logging.getLogger(__name__)

# The key of pg_advisory_xact_lock that serialises appends: "audit" in ASCII.
AUDIT_LOCK_KEY = 0x6175646974

CREATE, UPDATE, DELETE = "create", "update", "delete"
ROLE_CHANGE = "role_change"
SIGN_IN, SIGN_IN_FAILED = "sign_in", "sign_in_failed"
EXPORT = "export"
ACTIONS = (CREATE, UPDATE, DELETE, ROLE_CHANGE, SIGN_IN, SIGN_IN_FAILED, EXPORT)
# A user update that changes one of these is recorded as a role change.
ROLE_FIELDS = ("role", "roles")

# Event kinds end in a past-tense verb ("deal.created"), and audit actions use
# the imperative. Other verbs ("user.deactivated") become the action as they are.
ACTION_OF_VERB = {"created": CREATE, "updated": UPDATE, "deleted": DELETE}

# The record types whose events are audited, with the table a create is read
# from. A type mapped to None is audited from the changes its events carry.
AUDITED_TABLES: dict[str, type[Table] | None] = {
    "deal": Deal,
    "ticket": Ticket,
    "account": Account,
    "contact": Contact,
    "lead": Lead,
    "comment": Comment,
    "user": User,
    "team": Team,
    "role": Role,
    "pipeline": Pipeline,
    "stage": Stage,
    "forecast_quota": None,
    "campaign": Campaign,
    "web_form": None,
    "sensitive_field": None,
    "api_key": ApiKey,
    "webhook_endpoint": WebhookEndpoint,
    "workflow_rule": None,
    "sla_calendar": BusinessCalendar,
    "sla_policy": SlaPolicy,
    "scoring_rule": ScoringRule,
    "reply_template": ReplyTemplate,
    "import_job": ImportJob,
    "import_mapping": ImportMapping,
}
# Events about an audited record type that are not changes worth a row: a
# board reload follows a pipeline or stage change, which has its own event,
# and a sending campaign reports progress after every message.
UNAUDITED_KINDS = frozenset(
    {
        "board.reload",
        "campaign.progress",
        # An import's own steps: created and finished are audited.
        "import.queued",
        "import.started",
        "import.progress",
    }
)

# Columns whose values never enter the log: only the fact that they changed.
SECRET_FIELDS = frozenset(
    {
        "password_hash",
        "totp_secret",
        "recovery_codes",
        # An API key's hash and a webhook endpoint's signing secret.
        "secret_hash",
        "secret",
    }
)
REDACTED = "[redacted]"
# Columns that every write moves, which tell nothing about the change.
BOOKKEEPING_FIELDS = frozenset(
    {"id", "created_at", "updated_at", "version", "import_version"}
)
MAX_DETAIL_TEXT = 254

LAST_ROW_SQL = """
SELECT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS last_hash,
       clock_timestamp() AS now,
       ARRAY(SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))
             FROM generate_series(1, {})) AS ids
"""

INSERT_SQL = """
INSERT INTO audit_log (id, created_at, actor_id, client_address, action,
                       record_type, record_id, changes, details, prev_hash, hash)
SELECT u.id, u.created_at, u.actor_id, u.client_address, u.action,
       u.record_type, u.record_id, u.changes::jsonb, u.details::jsonb,
       u.prev_hash, u.hash
FROM unnest({}::bigint[], {}::timestamptz[], {}::integer[], {}::varchar[],
            {}::varchar[], {}::varchar[], {}::integer[], {}::text[], {}::text[],
            {}::varchar[], {}::varchar[])
     AS u(id, created_at, actor_id, client_address, action, record_type,
          record_id, changes, details, prev_hash, hash)
"""


@dataclass
class AuditEntry:
    """One row to append; ``client_address`` defaults to the request's."""

    action: str
    actor_id: int | None = None
    record_type: str | None = None
    record_id: int | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    client_address: str | None = field(default_factory=current_client_address)


async def append(entries: Sequence[AuditEntry]) -> list[int]:
    """Append ``entries`` to the chain in one insert; return their ids.

    Joins the caller's transaction if one is open, and otherwise commits on
    its own. The advisory lock is held until that transaction ends, so call
    this as the last step before commit. A caller that takes other locks
    after it can deadlock with a writer that holds those and waits here.
    """
    if not entries:
        return []
    async with AuditLog._meta.db.transaction():
        await AuditLog.raw("SELECT pg_advisory_xact_lock({})", AUDIT_LOCK_KEY)
        # A new statement, so its snapshot includes the rows that the
        # previous holder of the lock committed (READ COMMITTED).
        head = (await AuditLog.raw(LAST_ROW_SQL, len(entries)))[0]
        rows = chain_rows(entries, head["ids"], head["now"], head["last_hash"])
        await AuditLog.raw(
            INSERT_SQL,
            *(
                [row[name] for row in rows]
                for name in (
                    "id",
                    "created_at",
                    "actor_id",
                    "client_address",
                    "action",
                    "record_type",
                    "record_id",
                )
            ),
            [row["changes_json"] for row in rows],
            [row["details_json"] for row in rows],
            [row["prev_hash"] for row in rows],
            [row["hash"] for row in rows],
        )
    return [row["id"] for row in rows]


def chain_rows(
    entries: Sequence[AuditEntry],
    ids: Sequence[int],
    created_at: Any,
    last_hash: str | None,
) -> list[dict[str, Any]]:
    """Build the rows to insert, each linked to the hash of the one before."""
    prev_hash = last_hash or GENESIS_HASH
    rows = []
    for entry, row_id in zip(entries, ids, strict=True):
        row: dict[str, Any] = {
            "id": row_id,
            "created_at": created_at,
            "actor_id": entry.actor_id,
            "client_address": entry.client_address,
            "action": entry.action,
            "record_type": entry.record_type,
            "record_id": entry.record_id,
            "changes": plain(entry.changes),
            "details": plain(entry.details),
            "prev_hash": prev_hash,
        }
        row["hash"] = row_hash(row)
        row["changes_json"] = json.dumps(row["changes"], ensure_ascii=False)
        row["details_json"] = json.dumps(row["details"], ensure_ascii=False)
        rows.append(row)
        prev_hash = row["hash"]
    return rows


async def audit_changes(
    actor_id: int | None, items: Sequence[Mapping[str, Any]]
) -> None:
    """Append a row for each pending event of ``change_set()`` that is audited.

    ``items`` are the events as ``ChangeSet.add`` queued them, with
    ``kind``, ``record_type``, ``record_id`` and ``changes``. Updates carry
    ``{"field": [before, after]}``. A create is recorded with every column of
    the new row, read in this transaction. A delete is recorded from the
    changes its event carries, which should be ``snapshot(row, DELETE)`` of
    the row before it was deleted.
    """
    entries = []
    for item in items:
        if item["record_type"] not in AUDITED_TABLES or item["kind"] in UNAUDITED_KINDS:
            continue
        verb = item["kind"].rpartition(".")[2]
        action = ACTION_OF_VERB.get(verb, verb)
        table = AUDITED_TABLES[item["record_type"]]
        encrypted = encrypted_columns(table) if table is not None else ()
        changes = field_changes(action, item["changes"] or {}, encrypted)
        changes_role = any(name in changes for name in ROLE_FIELDS)
        if item["record_type"] == "user" and action == UPDATE and changes_role:
            action = ROLE_CHANGE
        entries.append(
            AuditEntry(
                action=action,
                actor_id=actor_id,
                record_type=item["record_type"],
                record_id=item["record_id"],
                changes=changes,
            )
        )
    await fill_created_rows(entries)
    await append(entries)


def field_changes(
    action: str, changes: Mapping[str, Any], encrypted: Collection[str] = ()
) -> dict[str, list[Any]]:
    """Return ``changes`` as ``{"field": [before, after]}``, secrets redacted.

    An event value that is not a [before, after] pair is the new value, or
    for a delete the old one. Values of the ``encrypted`` columns are
    redacted too, whatever path wrote the event.
    """
    pairs = {}
    for name, value in changes.items():
        if isinstance(value, list | tuple) and len(value) == 2:
            before, after = value
        elif action == DELETE:
            before, after = value, None
        else:
            before, after = None, value
        if name in SECRET_FIELDS or name in encrypted:
            before = None if before is None else REDACTED
            after = None if after is None else REDACTED
        pairs[name] = [before, after]
    return pairs


def snapshot(
    row: Mapping[str, Any], action: str, redacted: Collection[str] = ()
) -> dict[str, list[Any]]:
    """Return every column of ``row`` as a change: [None, value] for a create
    and [value, None] for a delete.

    Bookkeeping columns are left out. Secret columns, and those named in
    ``redacted``, show only whether they held a value.
    """
    changes = {}
    for name, value in row.items():
        if name in BOOKKEEPING_FIELDS:
            continue
        if (name in SECRET_FIELDS or name in redacted) and value is not None:
            value = REDACTED
        changes[name] = [value, None] if action == DELETE else [None, value]
    return changes


async def fill_created_rows(entries: Sequence[AuditEntry]) -> None:
    """Replace the changes of each create with every column of the new row."""
    created: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        if entry.action == CREATE and AUDITED_TABLES.get(entry.record_type or ""):
            created.setdefault(entry.record_type or "", []).append(entry)

    for record_type, group in created.items():
        table = AUDITED_TABLES[record_type]
        assert table is not None
        primary_key = table._meta.primary_key
        ids = [entry.record_id for entry in group]
        rows = await table.select().where(primary_key.is_in(ids))
        by_id = {row[primary_key._meta.name]: row for row in rows}
        # Ciphertext stays out too: the log cannot be re-encrypted when the
        # keys rotate, and old keys are removed afterwards.
        redacted = set(encrypted_columns(table))
        redacted.update(
            column._meta.name for column in table._meta.columns if column._meta.secret
        )
        for entry in group:
            row = by_id.get(entry.record_id)
            if row is None:
                # The event named a row this transaction cannot see; keep
                # the changes the event carried.
                continue
            entry.changes = snapshot(row, CREATE, redacted)


async def record(
    action: str,
    *,
    actor_id: int | None = None,
    record_type: str | None = None,
    record_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append a row for something that is not a change to a record.

    Commits on its own, or with the caller's transaction if one is open. A
    caller with an open transaction calls it last, as ``append()`` explains.
    Returns the row's id.
    Raises FieldError for an action not in ``ACTIONS``.
    """
    if action not in ACTIONS:
        raise FieldError("action", action, f"must be one of {', '.join(ACTIONS)}")
    entry = AuditEntry(
        action=action,
        actor_id=actor_id,
        record_type=record_type,
        record_id=record_id,
        details=dict(details or {}),
    )
    [audit_id] = await append([entry])
    logger.info(
        "audit row appended audit_id=%s action=%s user_id=%s",
        audit_id,
        action,
        actor_id,
    )
    return audit_id


async def record_sign_in(user_id: int) -> int:
    return await record(
        SIGN_IN, actor_id=user_id, record_type="user", record_id=user_id
    )


async def record_failed_sign_in(email: str) -> int:
    """Record a failed sign-in with the email that was tried, cut to 254 characters."""
    tried = " ".join(email.split())[:MAX_DETAIL_TEXT]
    return await record(SIGN_IN_FAILED, details={"email": tried})


async def record_export(
    actor_id: int,
    record_type: str,
    row_count: int,
    *,
    file_format: str,
    filters: Mapping[str, Any] | None = None,
    record_id: int | None = None,
) -> int:
    """Record that ``actor_id`` exported ``row_count`` records of ``record_type``.

    ``filters`` are the search and filters the export applied, as the list
    page took them. ``record_id`` names the one record whose rows were
    exported, such as the import job of a rejected-rows file. Raises
    FieldError for a negative count or an empty type or format.
    """
    if not record_type.strip():
        raise FieldError("record_type", record_type, "must not be empty")
    if not file_format.strip():
        raise FieldError("file_format", file_format, "must not be empty")
    if row_count < 0:
        raise FieldError("row_count", row_count, "must be zero or more")
    return await record(
        EXPORT,
        actor_id=actor_id,
        record_type=record_type,
        record_id=record_id,
        details={
            "format": file_format,
            "rows": row_count,
            "filters": dict(filters or {}),
        },
    )
