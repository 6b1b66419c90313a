"""Reading the audit log: a record's history and the administrators' search.

Both lists page by keyset, newest first. A page contains the rows with ids below
its ``before`` cursor, and ``next_before`` is the cursor of the next (older)
page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from app.audit.service import ACTIONS, AUDITED_TABLES, ROLE_CHANGE, UPDATE
from app.audit.tables import AuditLog
from app.errors import FieldError
from app.fields import MAX_ID
from app.pagination import contains_pattern, parse_positive, parse_search

# Events of audited types with other verbs add actions such as "deactivated",
# so any lower-case name is accepted, not only ACTIONS.
ACTION_NAME = re.compile(r"[a-z][a-z_]{0,39}")
HISTORY_PAGE_SIZE = 20
SEARCH_PAGE_SIZE = 50
# The audit log's ids are bigserial, so cursors may pass MAX_ID.
MAX_CURSOR = 2**63 - 1

ROW_COLUMNS = """
    a.id, a.created_at, a.actor_id, u.name AS actor_name, u.email AS actor_email,
    a.client_address, a.action, a.record_type, a.record_id,
    a.changes::text AS changes, a.details::text AS details
"""

# Reference fields whose ids the pages show by name, and where the name is.
REFERENCES = {
    "owner": "user",
    "assignee": "user",
    "author": "user",
    "user": "user",
    "stage": "stage",
    "pipeline": "pipeline",
    "team": "team",
    "account": "account",
    "parent": "account",
    "contact": "contact",
    "requester": "contact",
    "product": "product",
    "deal": "deal",
    "ticket": "ticket",
}
NAME_SQL = {
    "user": "SELECT id, name FROM app_user WHERE id = ANY({})",
    "stage": "SELECT id, name FROM stage WHERE id = ANY({})",
    "pipeline": "SELECT id, name FROM pipeline WHERE id = ANY({})",
    "team": "SELECT id, name FROM team WHERE id = ANY({})",
    "account": "SELECT id, name FROM account WHERE id = ANY({})",
    "contact": (
        "SELECT id, coalesce(nullif(trim(first_name || ' ' || last_name), ''), "
        "email) AS name FROM contact WHERE id = ANY({})"
    ),
    "product": "SELECT id, name FROM product WHERE id = ANY({})",
    "deal": "SELECT id, name FROM deal WHERE id = ANY({})",
    "ticket": "SELECT id, subject AS name FROM ticket WHERE id = ANY({})",
}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any
    # The names of referenced records, when the field is a reference.
    before_label: str | None = None
    after_label: str | None = None


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]
    next_before: int | None


def parse_cursor(raw: str | None) -> int | None:
    """Read a ``before`` cursor; None for the newest page.

    Raises FieldError naming ``before`` for anything but a whole number
    of 1 or more.
    """
    if not (raw or "").strip():
        return None
    cursor = parse_positive("before", raw, default=1)
    if cursor > MAX_CURSOR:
        raise FieldError("before", raw, "is too large")
    return cursor


async def record_history(
    record_type: str,
    record_id: int,
    hidden_fields: Collection[str],
    before: int | None = None,
    limit: int = HISTORY_PAGE_SIZE,
) -> AuditPage:
    """Return one page of a record's audit rows, newest first.

    ``hidden_fields`` are the fields the viewer may not see. They are left
    out of every row, and an update that changed only hidden fields is left
    out entirely, so the page does not reveal that they changed.
    """
    hidden = sorted(hidden_fields)
    rows = await AuditLog.raw(
        f"SELECT {ROW_COLUMNS} FROM audit_log a "
        "LEFT JOIN app_user u ON u.id = a.actor_id "
        "WHERE a.record_type = {} AND a.record_id = {} AND a.id < {} "
        "AND (a.action NOT IN ({}, {}) "
        "OR a.changes - {}::text[] <> jsonb_build_object()) "
        "ORDER BY a.id DESC LIMIT {}",
        record_type,
        record_id,
        before or MAX_CURSOR,
        UPDATE,
        ROLE_CHANGE,
        hidden,
        limit + 1,
    )
    return await build_page(rows, limit, frozenset(hidden))


@dataclass(frozen=True)
class AuditFilter:
    """The administrators' search of the log; empty fields match everything.

    ``actor`` is a user id or email. An email also matches failed sign-ins
    that tried it. ``until`` is exclusive and ``text`` matches anywhere in
    the changes, the details or the client address.
    """

    actor: str = ""
    action: str = ""
    record_type: str = ""
    record_id: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, str | None]) -> AuditFilter:
        """Read the search form's query parameters.

        Raises FieldError, naming the parameter and its value, for an
        unknown action or record type, an invalid id or time, or a range
        that ends before it starts.
        """
        action = (raw.get("action") or "").strip()
        if action and not ACTION_NAME.fullmatch(action):
            raise FieldError(
                "action", action, f"is not an action name such as {', '.join(ACTIONS)}"
            )
        record_type = (raw.get("record_type") or "").strip()
        if record_type and record_type not in AUDITED_TABLES:
            raise FieldError(
                "record_type",
                record_type,
                f"must be one of {', '.join(AUDITED_TABLES)}",
            )
        record_id = None
        if (raw.get("record_id") or "").strip():
            record_id = parse_positive("record_id", raw.get("record_id"), default=1)
            if record_id > MAX_ID:
                raise FieldError("record_id", raw.get("record_id"), "is too large")
        since = parse_time("since", raw.get("since"), end_of_day=False)
        until = parse_time("until", raw.get("until"), end_of_day=True)
        if since and until and until <= since:
            raise FieldError("until", raw.get("until"), "must be later than since")
        return cls(
            actor=parse_search(raw.get("actor")),
            action=action,
            record_type=record_type,
            record_id=record_id,
            since=since,
            until=until,
            text=parse_search(raw.get("q")),
        )

    def query_params(self) -> dict[str, str]:
        """Return the filter as the query parameters that link to it."""
        params = {
            "actor": self.actor,
            "action": self.action,
            "record_type": self.record_type,
            "record_id": str(self.record_id) if self.record_id else "",
            "since": form_time(self.since),
            "until": form_time(self.until, end_of_day=True),
            "q": self.text,
        }
        return {name: value for name, value in params.items() if value}


def parse_time(name: str, raw: str | None, *, end_of_day: bool) -> dt.datetime | None:
    """Read a UTC date (2026-12-04) or date and time (2026-12-04T16:30).

    A date alone means its start, or with ``end_of_day`` the start of the
    next day, so that ``until`` includes the whole day.
    """
    value = (raw or "").strip()
    if not value:
        return None
    try:
        if "T" in value or " " in value:
            parsed = dt.datetime.fromisoformat(value.replace(" ", "T"))
        else:
            day = dt.date.fromisoformat(value)
            parsed = dt.datetime.combine(day, dt.time())
            if end_of_day:
                parsed += dt.timedelta(days=1)
    except ValueError:
        raise FieldError(
            name, raw, "is not a date such as 2026-12-04 or 2026-12-04T16:30"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def form_time(value: dt.datetime | None, *, end_of_day: bool = False) -> str:
    """Show a parsed time the way ``parse_time`` reads it back unchanged."""
    if value is None:
        return ""
    value = value.astimezone(dt.UTC)
    if value.time() == dt.time() and value.second == 0:
        day = value.date() - dt.timedelta(days=1) if end_of_day else value.date()
        return day.isoformat()
    return value.strftime("%Y-%m-%dT%H:%M:%S").removesuffix(":00")


async def search_log(
    audit_filter: AuditFilter, before: int | None = None, limit: int = SEARCH_PAGE_SIZE
) -> AuditPage:
    """Return one page of the rows that match ``audit_filter``, newest first."""
    conditions = ["a.id < {}"]
    params: list[Any] = [before or MAX_CURSOR]
    actor = audit_filter.actor
    if actor.isascii() and actor.isdigit():
        conditions.append("a.actor_id = {}")
        params.append(int(actor) if int(actor) <= MAX_ID else 0)
    elif actor:
        conditions.append(
            "(a.actor_id IN (SELECT id FROM app_user WHERE lower(email) = lower({})) "
            "OR (a.action = 'sign_in_failed' "
            "AND lower(a.details->>'email') = lower({})))"
        )
        params += [actor, actor]
    if audit_filter.action:
        conditions.append("a.action = {}")
        params.append(audit_filter.action)
    if audit_filter.record_type:
        conditions.append("a.record_type = {}")
        params.append(audit_filter.record_type)
    if audit_filter.record_id is not None:
        conditions.append("a.record_id = {}")
        params.append(audit_filter.record_id)
    if audit_filter.since is not None:
        conditions.append("a.created_at >= {}")
        params.append(audit_filter.since)
    if audit_filter.until is not None:
        conditions.append("a.created_at < {}")
        params.append(audit_filter.until)
    if audit_filter.text:
        pattern = contains_pattern(audit_filter.text)
        # NOTE: no index serves this match, so a text search reads the rows
        # the other conditions leave, newest first, until a page is full.
        conditions.append(
            "(a.changes::text ILIKE {} OR a.details::text ILIKE {} "
            "OR a.client_address ILIKE {})"
        )
        params += [pattern, pattern, pattern]

    rows = await AuditLog.raw(
        f"SELECT {ROW_COLUMNS} FROM audit_log a "
        "LEFT JOIN app_user u ON u.id = a.actor_id "
        f"WHERE {' AND '.join(conditions)} ORDER BY a.id DESC LIMIT {{}}",
        *params,
        limit + 1,
    )
    return await build_page(rows, limit, frozenset())


async def build_page(
    rows: list[dict[str, Any]], limit: int, hidden: frozenset[str]
) -> AuditPage:
    """Decode the rows, drop hidden fields and name the referenced records."""
    next_before = rows[limit - 1]["id"] if len(rows) > limit else None
    rows = rows[:limit]
    for row in rows:
        changes = json.loads(row["changes"])
        row["details"] = json.loads(row["details"])
        row["changes"] = [
            FieldChange(name, pair[0], pair[1])
            for name, pair in sorted(changes.items())
            if name not in hidden
        ]
    names = await reference_names(rows)
    for row in rows:
        row["changes"] = [labelled(change, names) for change in row["changes"]]
    return AuditPage(rows=rows, next_before=next_before)


async def reference_names(rows: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """Look up, one query per kind, the names of records the changes refer to."""
    requested: dict[str, set[int]] = {}
    for row in rows:
        for change in row["changes"]:
            kind = REFERENCES.get(change.field)
            if kind is None:
                continue
            for value in (change.before, change.after):
                if isinstance(value, int) and 0 < value <= MAX_ID:
                    requested.setdefault(kind, set()).add(value)
    names = {}
    for kind, ids in requested.items():
        for found in await AuditLog.raw(NAME_SQL[kind], sorted(ids)):
            names[(kind, found["id"])] = found["name"]
    return names


def labelled(change: FieldChange, names: dict[tuple[str, int], str]) -> FieldChange:
    kind = REFERENCES.get(change.field)
    if kind is None:
        return change
    return FieldChange(
        change.field,
        change.before,
        change.after,
        before_label=reference_name(names, kind, change.before),
        after_label=reference_name(names, kind, change.after),
    )


def reference_name(
    names: dict[tuple[str, int], str], kind: str, value: Any
) -> str | None:
    return names.get((kind, value)) if isinstance(value, int) else None
