"""Searching accounts, contacts, deals, tickets and leads by text.

Each record type is matched by the same condition as its own list's search
box, within the viewer's read scope, so that a group's "more" link lists
the same records. Fields hidden from the viewer are neither searched nor
returned. Within a type, a name equal to the search comes first, then names
that start with it, then the rest by trigram similarity (pg_trgm).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from piccolo.table import Table

from app.access.permissions import Access
from app.access.scopes import scope_sql
from app.accounts.queries import search_condition as account_condition
from app.accounts.tables import Account
from app.contacts.queries import FULL_NAME
from app.contacts.queries import search_condition as contact_condition
from app.contacts.tables import Contact
from app.deals.listing import search_condition as deal_condition
from app.deals.tables import Deal
from app.errors import FieldError
from app.fields import MAX_ID
from app.leads.queries import search_condition as lead_condition
from app.leads.tables import Lead
from app.search.matching import any_of, contains_any, searchable
from app.tickets.tables import Ticket

# "T-123", "#T-123", "t123": the number tickets show and mail subjects carry.
TICKET_NUMBER = re.compile(r"#?T-?([0-9]{1,10})", re.IGNORECASE)
# Hits per type on the search page, and in the search box's dropdown.
GROUP_SIZE = 5
SUGGESTION_SIZE = 3


@dataclass(frozen=True)
class SearchType:
    """The search settings of one record type: its query, ranking and display.

    ``columns`` and ``source`` form the query, with the record as ``alias``.
    ``title`` is the SQL of the name that ranks hits, made of the fields
    ``title_fields``. While one of them is hidden, hits are ordered by id.
    ``record`` lists the result keys with the field whose rule hides each
    one (None for keys no rule hides). ``list_path`` is the type's own
    list, which takes the search as ``q``. Without one, "more" leads to
    this type's results on the search page.
    """

    object_type: str
    label: str
    table: type[Table]
    alias: str
    columns: str
    source: str
    title: str
    title_fields: tuple[str, ...]
    name_key: str
    condition: Callable[[str, list[object], Access], str]
    record: tuple[tuple[str, str | None], ...]
    list_path: str | None = None

    def more_url(self, search: str) -> str:
        """Link to every hit of this type: its own list, or the search page."""
        if self.list_path is not None:
            return f"{self.list_path}?{urlencode({'q': search})}"
        return f"/search?{urlencode({'q': search, 'type': self.object_type})}"


def ticket_number(search: str) -> int | None:
    """Return the ticket id that search text such as "T-123" names, or None."""
    match = TICKET_NUMBER.fullmatch(search.strip())
    if match is None:
        return None
    number = int(match.group(1))
    return number if 0 < number <= MAX_ID else None


def ticket_condition(search: str, args: list[object], access: Access) -> str:
    """Match a ticket's subject, or its number written as "T-123"."""
    conditions = []
    columns = searchable(access, "ticket", Ticket, {"subject": "t.subject"})
    if columns:
        conditions.append(contains_any(columns, search, args))
    number = ticket_number(search)
    if number is not None:
        args.append(number)
        conditions.append("t.id = {}")
    return any_of(conditions)


OWNER_NAME = "u.name AS owner_name"

SEARCH_TYPES: dict[str, SearchType] = {
    kind.object_type: kind
    for kind in (
        SearchType(
            object_type="account",
            label="Accounts",
            table=Account,
            alias="a",
            columns="a.id, a.name, a.domain, a.phone, a.city, a.country, a.owner, "
            + OWNER_NAME,
            source="account a LEFT JOIN app_user u ON u.id = a.owner",
            title="a.name",
            title_fields=("name",),
            name_key="name",
            condition=account_condition,
            record=(
                ("name", "name"),
                ("domain", "domain"),
                ("phone", "phone"),
                ("city", "city"),
                ("country", "country"),
                ("owner", "owner"),
                ("owner_name", "owner"),
            ),
            list_path="/accounts",
        ),
        SearchType(
            object_type="contact",
            label="Contacts",
            table=Contact,
            alias="c",
            columns="c.id, c.first_name, c.last_name, c.email, c.title, c.account, "
            f"ac.name AS account_name, c.owner, {OWNER_NAME}",
            source="contact c LEFT JOIN account ac ON ac.id = c.account "
            "LEFT JOIN app_user u ON u.id = c.owner",
            title=FULL_NAME,
            title_fields=("first_name", "last_name"),
            name_key="",
            condition=contact_condition,
            record=(
                ("first_name", "first_name"),
                ("last_name", "last_name"),
                ("email", "email"),
                ("title", "title"),
                ("account", "account"),
                ("account_name", "account"),
                ("owner", "owner"),
                ("owner_name", "owner"),
            ),
            list_path="/contacts",
        ),
        SearchType(
            object_type="deal",
            label="Deals",
            table=Deal,
            alias="d",
            columns="d.id, d.name, d.amount, d.close_date, d.pipeline, "
            "pl.name AS pipeline_name, d.stage, s.name AS stage_name, "
            "s.kind AS stage_kind, d.account, ac.name AS account_name, d.owner, "
            f"{OWNER_NAME}, d.team",
            source="deal d JOIN stage s ON s.id = d.stage "
            "JOIN pipeline pl ON pl.id = d.pipeline "
            "LEFT JOIN account ac ON ac.id = d.account "
            "LEFT JOIN app_user u ON u.id = d.owner",
            title="d.name",
            title_fields=("name",),
            name_key="name",
            condition=deal_condition,
            record=(
                ("name", "name"),
                ("amount", "amount"),
                ("close_date", "close_date"),
                ("pipeline", None),
                ("pipeline_name", None),
                ("stage", "stage"),
                ("stage_name", "stage"),
                ("stage_kind", "stage"),
                ("account", "account"),
                ("account_name", "account"),
                ("owner", "owner"),
                ("owner_name", "owner"),
                ("team", "team"),
            ),
            list_path="/deals",
        ),
        SearchType(
            object_type="ticket",
            label="Tickets",
            table=Ticket,
            alias="t",
            columns="t.id, t.subject, t.status, t.priority, t.assignee, "
            "u.name AS assignee_name, t.team",
            source="ticket t LEFT JOIN app_user u ON u.id = t.assignee",
            title="t.subject",
            title_fields=("subject",),
            name_key="subject",
            condition=ticket_condition,
            record=(
                ("subject", "subject"),
                ("status", "status"),
                ("priority", "priority"),
                ("assignee", "assignee"),
                ("assignee_name", "assignee"),
                ("team", "team"),
            ),
        ),
        SearchType(
            object_type="lead",
            label="Leads",
            table=Lead,
            alias="l",
            columns="l.id, l.name, l.email, l.company, l.status, l.score, l.owner, "
            + OWNER_NAME,
            source="lead l LEFT JOIN app_user u ON u.id = l.owner",
            title="l.name",
            title_fields=("name",),
            name_key="name",
            condition=lead_condition,
            record=(
                ("name", "name"),
                ("email", "email"),
                ("company", "company"),
                ("status", "status"),
                ("score", "score"),
                ("owner", "owner"),
                ("owner_name", "owner"),
            ),
            list_path="/leads",
        ),
    )
}


@dataclass(frozen=True)
class Hit:
    """One record found: its type, id, the name to show, and its visible fields."""

    object_type: str
    id: int
    name: str | None
    record: dict[str, Any]

    @property
    def url(self) -> str:
        return f"/{self.object_type}s/{self.id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.object_type,
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "record": self.record,
        }


@dataclass(frozen=True)
class Group:
    """The first hits of one type and the number of all its hits."""

    kind: SearchType
    hits: list[Hit]
    total: int


def parse_type(raw: str | None, name: str = "type") -> SearchType | None:
    """Read a record type to search, or None for every type."""
    value = (raw or "").strip()
    if not value:
        return None
    kind = SEARCH_TYPES.get(value)
    if kind is None:
        raise FieldError(name, raw, f"must be one of {', '.join(SEARCH_TYPES)}")
    return kind


def readable_types(access: Access) -> list[SearchType]:
    """Return the types whose records ``access`` may read, in search order."""
    return [
        kind for kind in SEARCH_TYPES.values() if access.can(kind.object_type, "read")
    ]


def present(kind: SearchType, row: dict[str, Any], access: Access) -> Hit:
    """Build a hit from a row, leaving out every value hidden from ``access``."""
    hidden = access.hidden_fields(kind.object_type)
    record = {
        key: row[key]
        for key, rule_field in kind.record
        if rule_field is None or rule_field not in hidden
    }
    if kind.object_type == "contact":
        parts = [record.get("first_name"), record.get("last_name")]
        name = " ".join(part for part in parts if part) or None
    else:
        name = record.get(kind.name_key)
    return Hit(kind.object_type, row["id"], name, record)


def where_sql(kind: SearchType, search: str, access: Access, args: list[object]) -> str:
    condition = kind.condition(search, args, access)
    scope = scope_sql(access, kind.object_type, kind.alias, args)
    return f"{condition} AND {scope}"


def order_sql(kind: SearchType, search: str, access: Access, args: list[object]) -> str:
    """Order hits by how well their name matches, when the viewer sees it."""
    alias = kind.alias
    parts = []
    number = ticket_number(search) if kind.object_type == "ticket" else None
    if number is not None:
        args.append(number)
        parts.append(f"({alias}.id = {{}}) DESC")
    if all(access.can_see(kind.object_type, name) for name in kind.title_fields):
        prefix = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.extend([search.lower(), prefix + "%", search])
        parts += [
            f"(lower({kind.title}) = {{}}) DESC NULLS LAST",
            f"({kind.title} ILIKE {{}}) DESC NULLS LAST",
            f"similarity({kind.title}, {{}}) DESC NULLS LAST",
            f"lower({kind.title})",
        ]
    parts.append(f"{alias}.id")
    return ", ".join(parts)


async def search_type(
    kind: SearchType, search: str, access: Access, limit: int, offset: int = 0
) -> tuple[list[Hit], int]:
    """Return one page of hits of a type, best first, and the number of all hits."""
    args: list[object] = []
    where = where_sql(kind, search, access, args)
    order = order_sql(kind, search, access, args)
    args.extend([limit, offset])
    rows = await kind.table.raw(
        f"SELECT {kind.columns}, count(*) OVER () AS search_total "
        f"FROM {kind.source} WHERE {where} ORDER BY {order} LIMIT {{}} OFFSET {{}}",
        *args,
    )
    if rows:
        total = int(rows[0]["search_total"])
    elif offset:
        # A page past the end has no row to carry the count.
        total = await count_type(kind, search, access)
    else:
        total = 0
    return [present(kind, row, access) for row in rows], total


async def count_type(kind: SearchType, search: str, access: Access) -> int:
    args: list[object] = []
    where = where_sql(kind, search, access, args)
    rows = await kind.table.raw(
        f"SELECT count(*) AS n FROM {kind.table._meta.tablename} {kind.alias} "
        f"WHERE {where}",
        *args,
    )
    return int(rows[0]["n"])


async def search_groups(
    search: str, kinds: list[SearchType], access: Access, size: int = GROUP_SIZE
) -> list[Group]:
    """Return the first ``size`` hits and the total of each type that has any."""
    groups = []
    for kind in kinds:
        hits, total = await search_type(kind, search, access, size)
        if total:
            groups.append(Group(kind, hits, total))
    return groups


async def search_all(
    search: str, kinds: list[SearchType], access: Access, limit: int, offset: int
) -> tuple[list[Hit], dict[str, int]]:
    """Return one page of every type's hits, type after type, and each total.

    The hits of all types form one list: the first type's in rank order,
    then the next type's, so an offset into it selects the types to read.
    """
    totals = {
        kind.object_type: await count_type(kind, search, access) for kind in kinds
    }
    hits: list[Hit] = []
    start = 0
    for kind in kinds:
        total = totals[kind.object_type]
        end = start + total
        if offset < end and len(hits) < limit:
            local = max(offset - start, 0) if not hits else 0
            page, _ = await search_type(kind, search, access, limit - len(hits), local)
            hits += page
        start = end
    return hits, totals
