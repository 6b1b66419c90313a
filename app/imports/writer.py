"""Set-based SQL for imports: upserts over ``unnest`` and batched lookups."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from piccolo.columns import Timestamptz
from piccolo.engine.postgres import PostgresTransaction
from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import User
from app.contacts.tables import Contact
from app.deals.tables import Deal, Pipeline, Stage
from app.encryption.columns import encrypt_values
from app.sanitize import RichText, clean_rich_text

# ``update`` expressions that move a deal's or ticket's board timestamp only
# when its stage or status changes. The new value is the source's own date
# when it has one, else now.
STAGE_ENTERED_ON_CHANGE = (
    "CASE WHEN t.stage IS DISTINCT FROM EXCLUDED.stage "
    "THEN EXCLUDED.stage_entered_at ELSE t.stage_entered_at END"
)
STATUS_CHANGED_ON_CHANGE = (
    "CASE WHEN t.status IS DISTINCT FROM EXCLUDED.status "
    "THEN EXCLUDED.status_changed_at ELSE t.status_changed_at END"
)


def transaction() -> PostgresTransaction:
    """Open the transaction of one batch.

    Nesting is rejected because a batch must commit or roll back on its own.
    An import therefore cannot run inside a caller's transaction.
    """
    return Account._meta.db.transaction(allow_nested=False)


# The stored row is as the last import left it (rows imported before
# import_version existed count as untouched).
UNTOUCHED = "coalesce(t.import_version, t.version) = t.version"


async def upsert(
    table: type[Table],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] = ("external_key",),
    insert_only: Collection[str] = (),
    update: Mapping[str, str] | None = None,
    returning: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Insert ``rows`` in one statement, updating rows whose ``conflict`` key exists.

    Every row must have the same keys, and no two rows may share a conflict
    key, which PostgreSQL rejects. An updated row gets ``version + 1`` and a
    new ``updated_at`` when the table has those columns. Columns in
    ``insert_only`` keep their stored value on update. ``update`` replaces the
    ``SET`` expression of a column, and it may use ``t`` for the stored row and
    ``EXCLUDED`` for the new one. A NULL in a NOT NULL timestamp column
    means now.

    Values of encrypted columns are stored encrypted and rich text is stored
    sanitised, as the services store them.

    Returns one dict per row with ``id``, the conflict and ``returning``
    columns, and ``inserted`` (false when an existing row was updated).
    """
    if not rows:
        return []
    rows = stored_rows(table, rows)

    columns = list(rows[0])
    selects = []
    casts = []
    for name in columns:
        column = table._meta.get_column_by_name(name)
        casts.append(f"{{}}::{array_type(column.column_type)}[]")
        if isinstance(column, Timestamptz) and not column._meta.null:
            selects.append(f"COALESCE(u.{quote(name)}, now())")
        else:
            selects.append(f"u.{quote(name)}")

    assignments = dict(update or {})
    for name in columns:
        if name not in conflict and name not in insert_only:
            assignments.setdefault(name, f"EXCLUDED.{quote(name)}")
    # A row whose imported values are all as stored keeps its version, so
    # re-importing the same file changes nothing a page or an API client
    # holds. An encrypted value differs on every write, so a row with one
    # always counts as changed.
    compared = [
        quote(name)
        for name, value in assignments.items()
        if value.startswith("EXCLUDED.")
    ]
    changed = (
        f"(ROW({', '.join('t.' + name for name in compared)}) IS DISTINCT FROM "
        f"ROW({', '.join('EXCLUDED.' + name for name in compared)}))"
        if compared
        else "TRUE"
    )
    column_names = {column._meta.db_column_name for column in table._meta.columns}
    if "version" in column_names:
        assignments.setdefault(
            "version", f"CASE WHEN {changed} THEN t.version + 1 ELSE t.version END"
        )
    if "updated_at" in column_names:
        assignments.setdefault(
            "updated_at", f"CASE WHEN {changed} THEN now() ELSE t.updated_at END"
        )
    kept = "FALSE"
    if "import_version" in column_names:
        # A row edited in Switchboard since the last import keeps every
        # value: the import must not overwrite someone's work unseen.
        assignments = {
            name: f"CASE WHEN {UNTOUCHED} THEN {value} ELSE t.{quote(name)} END"
            for name, value in assignments.items()
        }
        assignments["import_version"] = (
            f"CASE WHEN {UNTOUCHED} AND {changed} THEN t.version + 1 "
            f"WHEN {UNTOUCHED} THEN t.version ELSE t.import_version END"
        )
        selects.append("1")
        columns_sql = [*columns, "import_version"]
        kept = "(t.import_version IS DISTINCT FROM t.version)"
    else:
        columns_sql = list(columns)
    if not assignments:
        # DO NOTHING would return no row for an existing key.
        assignments[conflict[0]] = f"EXCLUDED.{quote(conflict[0])}"

    sql = (
        f"INSERT INTO {quote(table._meta.tablename)} AS t "
        f"({', '.join(quote(name) for name in columns_sql)}) "
        f"SELECT {', '.join(selects)} "
        f"FROM unnest({', '.join(casts)}) "
        f"AS u({', '.join(quote(name) for name in columns)}) "
        f"ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO UPDATE SET "
        + ", ".join(f"{quote(name)} = {value}" for name, value in assignments.items())
        + " RETURNING t.id, "
        + "".join(f"t.{quote(name)}, " for name in [*conflict, *returning])
        + f"(t.xmax = 0) AS inserted, {kept} AS kept"
    )
    args = [[row[name] for row in rows] for name in columns]
    return await table.raw(sql, *args)


def stored_rows(
    table: type[Table], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    rich_text = [
        column._meta.db_column_name
        for column in table._meta.columns
        if isinstance(column, RichText)
    ]
    stored = []
    for row in rows:
        values = encrypt_values(table, row)
        for name in rich_text:
            if values.get(name):
                values[name] = clean_rich_text(values[name])
        stored.append(values)
    return stored


async def ids_by_key(table: type[Table], keys: Collection[str]) -> dict[str, int]:
    """Map each ``external_key`` that exists in ``table`` to its row id."""
    if not keys:
        return {}
    rows = await table.raw(
        f"SELECT id, external_key FROM {quote(table._meta.tablename)} "
        "WHERE external_key = ANY({}::varchar[])",
        list(keys),
    )
    return {row["external_key"]: row["id"] for row in rows}


async def users_by_email(emails: Collection[str]) -> dict[str, dict[str, Any]]:
    """Map each lower-case email to ``{"id": ..., "team": ...}`` of its user."""
    if not emails:
        return {}
    rows = await User.raw(
        "SELECT u.id, lookup.email, u.team FROM app_user u "
        "JOIN unnest({}::varchar[]) AS lookup(email) ON lower(u.email) = lookup.email "
        "ORDER BY u.id",
        list(emails),
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        found.setdefault(row["email"], {"id": row["id"], "team": row["team"]})
    return found


async def contacts_by_email(emails: Collection[str], prefer: str) -> dict[str, int]:
    """Map each lower-case email to a contact's id.

    When several contacts share an address, the one whose ``external_key``
    starts with ``prefer`` wins, then the oldest.
    """
    if not emails:
        return {}
    rows = await Contact.raw(
        "SELECT DISTINCT ON (lookup.email) lookup.email, c.id FROM contact c "
        "JOIN unnest({}::varchar[]) AS lookup(email) ON lower(c.email) = lookup.email "
        "ORDER BY lookup.email, coalesce(c.external_key LIKE {}, false) DESC, c.id",
        list(emails),
        prefix_pattern(prefer),
    )
    return {row["email"]: row["id"] for row in rows}


async def accounts_by_domain(domains: Collection[str], prefer: str) -> dict[str, int]:
    """Map each lower-case domain to an account's id, preferring as above."""
    if not domains:
        return {}
    rows = await Account.raw(
        "SELECT DISTINCT ON (lookup.domain) lookup.domain, a.id FROM account a "
        "JOIN unnest({}::varchar[]) AS lookup(domain) "
        "ON lower(a.domain) = lookup.domain "
        "ORDER BY lookup.domain, coalesce(a.external_key LIKE {}, false) DESC, a.id",
        list(domains),
        prefix_pattern(prefer),
    )
    return {row["domain"]: row["id"] for row in rows}


async def most_recent_deals(contact_ids: Collection[int]) -> dict[int, int]:
    """Map each contact id to the id of its most recently created deal."""
    if not contact_ids:
        return {}
    rows = await Deal.raw(
        "SELECT DISTINCT ON (contact) contact, id FROM deal "
        "WHERE contact = ANY({}::integer[]) "
        "ORDER BY contact, created_at DESC, id DESC",
        list(contact_ids),
    )
    return {row["contact"]: row["id"] for row in rows}


async def ensure_users(users: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Create the users in ``{email: (name, role)}`` that do not exist yet.

    Existing users keep their name, role and password, which people may have
    changed since an earlier import. New users get no password, so they
    cannot sign in until an admin sets one. Returns ``upsert``'s rows.
    """
    rows = [
        {"email": email, "name": name, "role": role, "password_hash": None}
        for email, (name, role) in users.items()
    ]
    return await upsert(
        User,
        rows,
        conflict=("email",),
        insert_only=("name", "role", "password_hash"),
        update={
            "email": "t.email",
            "version": "t.version",
            "updated_at": "t.updated_at",
        },
    )


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: str
    probability: int


@dataclass
class PipelineStages:
    pipeline_id: int
    # Stage ids by name, including stages people added after an import.
    stage_ids: dict[str, int]
    pipeline_created: bool
    stages_created: int


async def ensure_pipeline(name: str, stages: Sequence[StageSpec]) -> PipelineStages:
    """Create the pipeline and those of its ``stages`` that are missing.

    Existing stages keep their position, probability and kind, because an
    admin may have tuned them. New pipelines go after the existing ones.
    """
    pipeline_rows = await Pipeline.raw(
        "INSERT INTO pipeline AS t (name, position) "
        "SELECT {}, coalesce(max(position) + 1, 0) FROM pipeline "
        "ON CONFLICT (name) DO UPDATE SET name = t.name "
        "RETURNING t.id, (t.xmax = 0) AS inserted",
        name,
    )
    pipeline = pipeline_rows[0]

    stage_rows = await upsert(
        Stage,
        [
            {
                "pipeline": pipeline["id"],
                "name": stage.name,
                "position": position,
                "probability": stage.probability,
                "kind": stage.kind,
            }
            for position, stage in enumerate(stages)
        ],
        conflict=("pipeline", "name"),
        insert_only=("position", "probability", "kind"),
        update={"name": "t.name", "version": "t.version", "updated_at": "t.updated_at"},
    )

    existing = await Stage.raw(
        "SELECT id, name FROM stage WHERE pipeline = {}", pipeline["id"]
    )
    return PipelineStages(
        pipeline_id=pipeline["id"],
        stage_ids={row["name"]: row["id"] for row in existing},
        pipeline_created=pipeline["inserted"],
        stages_created=sum(1 for row in stage_rows if row["inserted"]),
    )


async def link_account_parents(links: Sequence[tuple[str, str]]) -> set[str]:
    """Set ``parent`` for each ``(child key, parent key)`` of ``external_key``s.

    Only rows whose parent changes are written. Returns the child keys whose
    child or parent account does not exist.
    """
    if not links:
        return set()

    rows = await Account.raw(
        "SELECT u.child_key, child.id AS child_id, parent.id AS parent_id "
        "FROM unnest({}::varchar[], {}::varchar[]) AS u(child_key, parent_key) "
        "LEFT JOIN account child ON child.external_key = u.child_key "
        "LEFT JOIN account parent ON parent.external_key = u.parent_key",
        [child for child, _ in links],
        [parent for _, parent in links],
    )
    resolved = [row for row in rows if row["child_id"] and row["parent_id"]]

    if resolved:
        await Account.raw(
            "UPDATE account AS t SET parent = u.parent_id, "
            "version = t.version + 1, import_version = t.version + 1, "
            "updated_at = now() "
            "FROM unnest({}::integer[], {}::integer[]) AS u(child_id, parent_id) "
            f"WHERE t.id = u.child_id AND t.parent IS DISTINCT FROM u.parent_id "
            f"AND {UNTOUCHED}",
            [row["child_id"] for row in resolved],
            [row["parent_id"] for row in resolved],
        )
    return {row["child_key"] for row in rows} - {row["child_key"] for row in resolved}


def array_type(column_type: str) -> str:
    # Drop the type modifier: an explicit cast to VARCHAR(n) would truncate
    # long values silently, while assigning the base type raises an error.
    return re.sub(r"\(.*\)", "", column_type)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def prefix_pattern(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
