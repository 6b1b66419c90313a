"""Listing, reading, creating and changing records for the API, as one user.

The user's scopes decide which records exist for them (others are 404),
their field rules which fields they see and set, and each write goes
through the record type's service.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import msgspec
from piccolo.table import Table

from app.access.scopes import USER_TEAMS_SQL, require_record, scope_sql
from app.api.resources import Resource, teams_of
from app.auth.service import CurrentUser
from app.errors import EditConflict, FieldError, NotFound, VersionMismatch
from app.fields import MAX_ID
from app.merge import Edit, changed_values

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
ORDER_DESCENDING = "-"


@dataclass(frozen=True)
class Filters:
    """The conditions of a list request, each None when not given."""

    person: int | None = None
    team: int | None = None
    status: str | int | None = None
    updated_since: dt.datetime | None = None
    pipeline: int | None = None

    def sql(self, resource: Resource, args: list[object]) -> list[str]:
        alias = resource.alias
        conditions = []
        if self.person is not None:
            args.append(self.person)
            conditions.append(f"{alias}.{resource.owner_field} = {{}}")
        if self.team is not None and resource.team_field is not None:
            args.append(self.team)
            conditions.append(f"{alias}.{resource.team_field} = {{}}")
        elif self.team is not None:
            args.extend([[self.team], [self.team]])
            conditions.append(f"{alias}.{resource.owner_field} IN ({USER_TEAMS_SQL})")
        if self.status is not None and resource.status_field is not None:
            args.append(self.status)
            conditions.append(f"{alias}.{resource.status_field} = {{}}")
        if self.pipeline is not None:
            args.append(self.pipeline)
            conditions.append(f"{alias}.pipeline = {{}}")
        if self.updated_since is not None:
            args.append(self.updated_since)
            conditions.append(f"{alias}.updated_at >= {{}}")
        return conditions


class InvalidSort(FieldError):
    """A ``sort`` parameter naming no sortable column (400, not 422)."""


@dataclass(frozen=True)
class Sort:
    """A list's order: one sortable column, then the id, both the same way."""

    column: str
    descending: bool = False

    @classmethod
    def parse(cls, sorts: Mapping[str, str], raw: str | None) -> Sort:
        """Read ``name`` or ``-name``; ``sorts`` maps each name to its SQL type."""
        value = (raw or "id").strip()
        column = value.removeprefix(ORDER_DESCENDING)
        if column not in sorts:
            choices = ", ".join(sorts)
            raise InvalidSort(
                "sort", raw, f"must be one of {choices}, each optionally after -"
            )
        return cls(column=column, descending=value.startswith(ORDER_DESCENDING))

    @property
    def text(self) -> str:
        return f"{ORDER_DESCENDING if self.descending else ''}{self.column}"


@dataclass(frozen=True)
class ListPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(sort: Sort, row: dict[str, Any]) -> str:
    value = row[sort.column]
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    raw = msgspec.json.encode({"sort": sort.text, "value": value, "id": row["id"]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(sorts: Mapping[str, str], sort: Sort, token: str) -> tuple[Any, int]:
    """Return the sort value and id a cursor points after.

    Raises FieldError for a cursor that is malformed or that was made for
    another sort.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = msgspec.json.decode(raw)
        record_id = int(data["id"])
        value = data["value"]
        if data["sort"] != sort.text or not 0 < record_id <= MAX_ID:
            raise ValueError(token)
        sql_type = sorts[sort.column]
        if value is None and sort.column != "id":
            # The page ended on a row without a value in a nullable column.
            return None, record_id
        if sql_type == "timestamptz":
            value = dt.datetime.fromisoformat(value)
        elif sql_type == "date":
            value = dt.date.fromisoformat(value)
        elif sql_type == "integer":
            value = int(value)
        elif not isinstance(value, str):
            raise ValueError(token)
    except (ValueError, TypeError, KeyError, binascii.Error, msgspec.DecodeError):
        raise FieldError(
            "cursor", token, "is not a cursor of this list and sort"
        ) from None
    return value, record_id


async def list_records(
    resource: Resource,
    user: CurrentUser,
    filters: Filters,
    sort: Sort,
    cursor: str | None,
    limit: int,
) -> ListPage:
    """Return one page of the records ``user`` may read, and the next cursor."""
    alias = resource.alias
    args: list[object] = []
    conditions = [scope_sql(user.access, resource.object_type, alias, args)]
    conditions += filters.sql(resource, args)
    page = await keyset_page(
        resource.table,
        resource.select_sql(),
        alias,
        conditions,
        args,
        resource.sorts,
        sort,
        cursor,
        limit,
    )
    return ListPage(
        rows=[resource.decode(row) for row in page.rows], next_cursor=page.next_cursor
    )


def after_condition(
    column: str, alias: str, sort: Sort, sql_type: str, value: Any
) -> str:
    """Return the SQL condition for rows after a cursor at ``value`` and an id.

    Its placeholders take the value (unless it is None) and then the id.
    A row comparison with a null is null, so rows without a value, which
    sort last ascending and first descending, get their own conditions.
    """
    comparison = "<" if sort.descending else ">"
    if value is None:
        among_nulls = f"({column} IS NULL AND {alias}.id {comparison} {{}})"
        if sort.descending:
            return f"({among_nulls} OR {column} IS NOT NULL)"
        return among_nulls
    after = f"({column}, {alias}.id) {comparison} ({{}}::{sql_type}, {{}}::integer)"
    if sort.descending:
        return after
    return f"({after} OR {column} IS NULL)"


async def keyset_page(
    table: type[Table],
    select_sql: str,
    alias: str,
    conditions: list[str],
    args: list[object],
    sorts: Mapping[str, str],
    sort: Sort,
    cursor: str | None,
    limit: int,
) -> ListPage:
    """Return one page of ``select_sql`` (a SELECT ... FROM) in ``sort`` order.

    ``conditions`` are SQL conditions on the rows of ``alias``, with their
    placeholders' values in ``args``. ``sorts`` maps each sortable column to
    its SQL type. Rows without a value come last in ascending order and
    first in descending order, as PostgreSQL sorts nulls by default. A
    cursor from another sort is rejected with FieldError.
    """
    conditions = list(conditions) or ["TRUE"]
    args = list(args)
    direction = "DESC" if sort.descending else "ASC"
    comparison = "<" if sort.descending else ">"
    sql_type = sorts[sort.column]
    if cursor:
        value, after_id = decode_cursor(sorts, sort, cursor)
        if sort.column == "id":
            args.append(after_id)
            conditions.append(f"{alias}.id {comparison} {{}}")
        else:
            conditions.append(
                after_condition(f"{alias}.{sort.column}", alias, sort, sql_type, value)
            )
            args.extend([after_id] if value is None else [value, after_id])

    order = f"{alias}.id {direction}"
    if sort.column != "id":
        nulls = "FIRST" if sort.descending else "LAST"
        order = f"{alias}.{sort.column} {direction} NULLS {nulls}, {order}"
    args.append(limit + 1)
    rows = await table.raw(
        f"{select_sql} WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT {{}}",
        *args,
    )
    if len(rows) <= limit:
        return ListPage(rows=rows, next_cursor=None)
    return ListPage(rows=rows[:limit], next_cursor=encode_cursor(sort, rows[limit - 1]))


async def load_record(resource: Resource, record_id: int) -> dict[str, Any]:
    """Load a record whatever the scope; the caller checks it."""
    rows = await resource.table.raw(
        f"{resource.select_sql()} WHERE {resource.alias}.id = {{}}", record_id
    )
    if not rows:
        raise NotFound(resource.object_type, record_id)
    return resource.decode(rows[0])


async def read_record(
    resource: Resource, user: CurrentUser, record_id: int, action: str = "read"
) -> dict[str, Any]:
    """Load a record for ``action``; NotFound outside the read scope, 403 after."""
    row = await load_record(resource, record_id)
    require_record(user.access, resource.object_type, action, row)
    return row


def as_text(name: str, value: Any) -> str:
    """Turn a JSON value into the text the services' parsers read."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise FieldError(name, value, "must be a string, a number or null")
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return value
    raise FieldError(name, value, "must be a string, a number or null")


def check_body(
    resource: Resource,
    user: CurrentUser,
    body: dict[str, Any],
    allowed: tuple[str, ...],
) -> dict[str, str]:
    """Check that every field of a request body exists and is the user's to set.

    Returns the values as text. Raises FieldError naming the first field
    that is unknown, not settable, hidden from the user or read-only.
    """
    values = {}
    for name, value in body.items():
        if name not in allowed:
            known = (*resource.fields, *("id", "version", "created_at", "updated_at"))
            reason = (
                "cannot be set through the API"
                if name in known
                else f"is not a {resource.object_type} field"
            )
            raise FieldError(name, value, f"{reason}; set any of {', '.join(allowed)}")
        if not user.access.can_write(resource.object_type, name):
            raise FieldError(name, value, "is read-only for your role")
        values[name] = as_text(name, value)
    return values


async def check_create_scope(
    resource: Resource, user: CurrentUser, values: dict[str, str]
) -> None:
    """Reject a new record that would fall outside the user's create scope."""
    owner_field = resource.owner_field
    owner = resource.parse(owner_field, values.get(owner_field)) or user.id
    if resource.team_field is not None:
        team = resource.parse(resource.team_field, values.get(resource.team_field))
        teams = [team] if team is not None else await teams_of(owner)
    else:
        teams = await teams_of(owner)
    if user.access.permits(resource.object_type, "create", owner, teams):
        return
    scope = user.access.scope(resource.object_type, "create")
    reason = "must be you" if scope == "own" else "must be in one of your teams"
    raise FieldError(owner_field, values.get(owner_field) or owner, reason)


async def create_record(
    resource: Resource, user: CurrentUser, body: dict[str, Any]
) -> dict[str, Any]:
    """Create a record through its service and return it as stored."""
    values = check_body(
        resource, user, body, (*resource.editable, *resource.create_only)
    )
    await check_create_scope(resource, user, values)
    if resource.check_values is not None:
        parsed = {
            name: resource.parse(name, raw)
            for name, raw in values.items()
            if name in resource.editable
        }
        await resource.check_values(user.access, parsed, None)
    record_id = await resource.create(values, user.id)
    return await load_record(resource, record_id)


async def update_record(
    resource: Resource,
    user: CurrentUser,
    record_id: int,
    expected_version: int | None,
    body: dict[str, Any],
) -> dict[str, Any]:
    """Apply a partial update to a record at ``expected_version``.

    Raises VersionMismatch (412) when the record is at another version,
    checked again under the row lock, so no change is written over one the
    caller has not seen. None (``If-Match: *``) takes the version this read
    finds, so a change committed between the read and the lock still gets 412.
    """
    row = await read_record(resource, user, record_id, "edit")
    if expected_version is None:
        expected_version = row["version"]
    if row["version"] != expected_version:
        raise VersionMismatch(
            resource.object_type, record_id, expected_version, row["version"]
        )
    values = check_body(resource, user, body, resource.editable)
    edits = {
        name: Edit(base=row[name], new=resource.parse(name, raw))
        for name, raw in values.items()
    }
    if resource.check_values is not None:
        await resource.check_values(user.access, changed_values(edits), record_id)
    result = await resource.update(
        record_id, edits, user.id, expected_version=expected_version
    )
    if result.conflicts:
        # Not expected: at the same version the stored values are the bases.
        raise EditConflict(resource.object_type, record_id, result.conflicts)
    return await load_record(resource, record_id)


def next_link(path: str, params: dict[str, Any], cursor: str | None) -> str | None:
    """Return the URL of the next page, keeping the request's other parameters."""
    if cursor is None:
        return None
    kept = {name: value for name, value in params.items() if value not in (None, "")}
    kept["cursor"] = cursor
    return f"{path}?{urlencode(kept)}"
