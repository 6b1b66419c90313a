"""The rows a list or board exports: its filters and the viewer's scope.

Each export lists its columns with the field rule that hides each one. An
export is named by the list or board it comes from; ``lead`` (the lead
list) and ``lead_board`` both export leads, with different columns.
Rows are read in chunks ordered by id, each chunk a query of its own, so an
export of any size keeps one chunk in memory and no connection between
chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.access.permissions import Access
from app.access.scopes import scope_sql
from app.accounts.queries import search_condition as account_search
from app.boards import BoardFilter
from app.contacts.queries import search_condition as contact_search
from app.contacts.tables import Contact
from app.deals.listing import DealListFilter
from app.deals.tables import Deal
from app.encryption.columns import decrypt_row
from app.leads.queries import LeadFilter

CHUNK_ROWS = 1000


@dataclass(frozen=True)
class ExportColumn:
    """A CSV column: its header, its SQL and the field rule that hides it."""

    name: str
    sql: str
    rule_field: str | None = None


@dataclass(frozen=True)
class ExportKind:
    """An export: the object type whose rights and field rules apply, its
    table's alias, the FROM clause and the columns."""

    object_type: str
    alias: str
    source: str
    columns: tuple[ExportColumn, ...]


def column(name: str, sql: str | None = None, rule: str | None = "") -> ExportColumn:
    """Build a column hidden by the field rule of ``rule``, by default ``name``."""
    return ExportColumn(name, sql or name, name if rule == "" else rule)


# No field rule hides a record's timestamps.
TIMESTAMPS = ("created_at", "updated_at")


def export_kind(
    object_type: str,
    alias: str,
    source: str,
    *columns: str | ExportColumn,
    field_rules: bool = True,
) -> ExportKind:
    """Build an export whose first column is the id of the row ``alias`` names.

    A column given by name alone reads that column of ``alias`` and is hidden
    by the field rule of that name, unless it is a timestamp or
    ``field_rules`` is false.
    """
    built = [column("id", f"{alias}.id", rule=None)]
    for item in columns:
        if isinstance(item, ExportColumn):
            built.append(item)
            continue
        ruled = field_rules and item not in TIMESTAMPS
        built.append(column(item, f"{alias}.{item}", rule="" if ruled else None))
    return ExportKind(object_type, alias, source, tuple(built))


CONTACT_NAME = "nullif(trim(c.first_name || ' ' || c.last_name), '')"
OWNER = column("owner", "u.name")
LEAD_SOURCE = "lead l LEFT JOIN app_user u ON u.id = l.owner"

KINDS: dict[str, ExportKind] = {
    "deal": export_kind(
        "deal",
        "d",
        """deal d
        JOIN pipeline pl ON pl.id = d.pipeline
        JOIN stage s ON s.id = d.stage
        LEFT JOIN account a ON a.id = d.account
        LEFT JOIN contact c ON c.id = d.contact
        LEFT JOIN app_user u ON u.id = d.owner
        LEFT JOIN team tm ON tm.id = d.team""",
        "name",
        column("pipeline", "pl.name", rule=None),
        column("stage", "s.name"),
        "amount",
        "close_date",
        column("account", "a.name"),
        column("contact", CONTACT_NAME),
        OWNER,
        column("team", "tm.name"),
        *TIMESTAMPS,
    ),
    "ticket": export_kind(
        "ticket",
        "t",
        """ticket t
        LEFT JOIN contact c ON c.id = t.requester
        LEFT JOIN account a ON a.id = t.account
        LEFT JOIN app_user u ON u.id = t.assignee
        LEFT JOIN team tm ON tm.id = t.team""",
        "subject",
        "status",
        "priority",
        "type",
        "channel",
        # NOTE: no ticket field rule covers the requester or the account, and
        # the ticket page shows them whatever the contact's own rules hide.
        column("requester", CONTACT_NAME, rule=None),
        column("requester_email", "c.email", rule=None),
        column("account", "a.name", rule=None),
        column("assignee", "u.name"),
        column("team", "tm.name"),
        "description",
        *TIMESTAMPS,
    ),
    "account": export_kind(
        "account",
        "a",
        """account a
        LEFT JOIN account p ON p.id = a.parent
        LEFT JOIN app_user u ON u.id = a.owner""",
        "name",
        "domain",
        "industry",
        "employees",
        "annual_revenue",
        "phone",
        "website",
        "city",
        "country",
        column("parent", "p.name", rule=None),
        OWNER,
        *TIMESTAMPS,
    ),
    "contact": export_kind(
        "contact",
        "c",
        """contact c
        LEFT JOIN account a ON a.id = c.account
        LEFT JOIN app_user u ON u.id = c.owner""",
        "first_name",
        "last_name",
        "email",
        # Decrypted in Python after the read.
        "phone",
        "title",
        "lifecycle_stage",
        column("account", "a.name"),
        OWNER,
        *TIMESTAMPS,
    ),
    "lead": export_kind(
        "lead",
        "l",
        LEAD_SOURCE,
        "name",
        "email",
        "company",
        "source",
        "status",
        "score",
        OWNER,
        *TIMESTAMPS,
    ),
    # The lead board's cards: the fields a card shows, by status column.
    "lead_board": export_kind(
        "lead",
        "l",
        LEAD_SOURCE,
        "status",
        "name",
        "company",
        "score",
        OWNER,
        "updated_at",
    ),
    # Campaigns have no field rules: a role reads all of a campaign or none.
    "campaign": export_kind(
        "campaign",
        "cp",
        "campaign cp LEFT JOIN app_user u ON u.id = cp.created_by",
        "name",
        "subject",
        "audience",
        "state",
        "send_at",
        "rate_per_minute",
        column(
            "sent",
            "(SELECT count(*) FROM campaign_recipient r "
            "WHERE r.campaign = cp.id AND r.sent_at IS NOT NULL)",
            rule=None,
        ),
        column("created_by", "u.name", rule=None),
        "created_at",
        "started_at",
        "finished_at",
        field_rules=False,
    ),
}


@dataclass(frozen=True)
class ExportFilter:
    """The filters of the page an export was started from.

    ``pipeline_id`` and ``board`` apply to deals (a pipeline board) unless
    ``deals`` (the deal list's filters, which include them) is set, ``board``
    to tickets, ``search`` to accounts and contacts, ``leads`` to the lead
    list. The lead board and the campaign list have no filters.
    """

    board: BoardFilter = field(default_factory=BoardFilter)
    pipeline_id: int | None = None
    search: str = ""
    leads: LeadFilter = field(default_factory=LeadFilter)
    deals: DealListFilter | None = None

    def as_details(self) -> dict[str, Any]:
        """Return the filters as the audit log records them, leaving out unset ones."""
        if self.deals is not None:
            return self.deals.as_details()
        details = {
            "pipeline": self.pipeline_id,
            "person": self.board.person_id,
            "team": self.board.team_id,
            "q": self.search or self.leads.search or None,
            "status": self.leads.status or None,
            "source": self.leads.source or None,
            "owner": self.leads.owner,
        }
        return {name: value for name, value in details.items() if value is not None}


def visible_columns(export: str, access: Access) -> tuple[ExportColumn, ...]:
    """Return the columns of ``export`` without those whose field is hidden."""
    kind = KINDS[export]
    hidden = access.hidden_fields(kind.object_type)
    return tuple(item for item in kind.columns if item.rule_field not in hidden)


def where_sql(
    export: str, export_filter: ExportFilter, access: Access, args: list[object]
) -> str:
    """Return the WHERE conditions of the filter and the viewer's read scope."""
    kind = KINDS[export]
    object_type = kind.object_type
    alias = kind.alias
    where = "TRUE"
    if export == "lead":
        # LeadFilter's conditions name the lead table "l", as this export does.
        where += " AND " + export_filter.leads.conditions(args, access)
    elif object_type == "deal" and export_filter.deals is not None:
        where += export_filter.deals.conditions(args, access)
    elif object_type == "deal":
        if export_filter.pipeline_id is not None:
            args.append(export_filter.pipeline_id)
            where += f" AND {alias}.pipeline = {{}}"
        where += export_filter.board.sql(f"{alias}.owner", f"{alias}.team", args)
    elif object_type == "ticket":
        where += export_filter.board.sql(f"{alias}.assignee", f"{alias}.team", args)
    elif object_type == "account":
        where += " AND " + account_search(export_filter.search, args, access)
    elif object_type == "contact":
        where += " AND " + contact_search(export_filter.search, args, access)
    return where + " AND " + scope_sql(access, object_type, alias, args)


async def count_rows(export: str, export_filter: ExportFilter, access: Access) -> int:
    kind = KINDS[export]
    args: list[object] = []
    where = where_sql(export, export_filter, access, args)
    rows = await Deal.raw(
        f"SELECT count(*) AS n FROM {kind.object_type} {kind.alias} WHERE {where}",
        *args,
    )
    return int(rows[0]["n"])


async def export_chunks(
    export: str,
    export_filter: ExportFilter,
    access: Access,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncIterator[list[list[Any]]]:
    """Yield the rows the viewer may read, ``chunk_rows`` at a time, by id.

    Each row is a list of values in the order of ``visible_columns``.
    """
    kind = KINDS[export]
    columns = visible_columns(export, access)
    select = ", ".join(f"{item.sql} AS {item.name}" for item in columns)
    after = 0
    while True:
        args: list[object] = []
        where = where_sql(export, export_filter, access, args)
        args.extend([after, chunk_rows])
        rows = await Deal.raw(
            f"SELECT {kind.alias}.id AS export_id, {select} FROM {kind.source} "
            f"WHERE {where} AND {kind.alias}.id > {{}} "
            f"ORDER BY {kind.alias}.id LIMIT {{}}",
            *args,
        )
        if not rows:
            return
        if kind.object_type == "contact":
            rows = [decrypt_row(Contact, row) for row in rows]
        yield [[row[item.name] for item in columns] for row in rows]
        if len(rows) < chunk_rows:
            return
        after = rows[-1]["export_id"]
