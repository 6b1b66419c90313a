"""Reading the lead list and lead pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msgspec

from app import fields
from app.access.permissions import SYSTEM, Access
from app.access.scopes import owner_teams_sql, scope_sql
from app.boards import PAGE_SIZE, Cursor
from app.encryption.columns import encrypted_columns
from app.errors import FieldError, NotFound
from app.leads.tables import STATUSES, Lead
from app.pagination import Page, PageRequest
from app.search.matching import contains_any, searchable

LEAD_SQL = f"""
    SELECT l.id, l.name, l.email, l.company, l.source, l.status, l.owner,
        u.name AS owner_name, l.answers::text AS answers, l.closed_at,
        l.rule_score, l.model_score, l.score, l.score_factors::text AS score_factors,
        l.model_version, l.scored_at, l.created_at, l.updated_at, l.version,
        l.external_key,
        l.converted_contact, l.converted_account, l.converted_deal, l.converted_at,
        nullif(trim(c.first_name || ' ' || c.last_name), '') AS converted_contact_name,
        a.name AS converted_account_name, d.name AS converted_deal_name,
        {owner_teams_sql("l")} AS owner_teams
    FROM lead l
    LEFT JOIN app_user u ON u.id = l.owner
    LEFT JOIN contact c ON c.id = l.converted_contact
    LEFT JOIN account a ON a.id = l.converted_account
    LEFT JOIN deal d ON d.id = l.converted_deal
    WHERE l.id = {{}}
"""
ORDERS = {
    "score": "l.score DESC NULLS LAST, l.id DESC",
    "newest": "l.id DESC",
    "name": "lower(l.name), l.id",
}


@dataclass(frozen=True)
class LeadFilter:
    """The lead list's search and filters, as its query parameters give them."""

    search: str = ""
    status: str = ""
    source: str = ""
    owner: int | None = None
    order: str = "score"

    @classmethod
    def parse(
        cls,
        search: str,
        status: str | None,
        source: str | None,
        owner: str | None,
        order: str | None,
    ) -> LeadFilter:
        status = (status or "").strip()
        if status and status not in STATUSES:
            raise FieldError("status", status, f"must be one of {', '.join(STATUSES)}")
        order = (order or "score").strip()
        if order not in ORDERS:
            raise FieldError("order", order, f"must be one of {', '.join(ORDERS)}")
        # An id beyond PostgreSQL's integer range would fail in the query.
        owner_id = fields.reference("owner", owner)
        return cls(search, status, (source or "").strip()[:120], owner_id, order)

    def keep(self) -> dict[str, str | None]:
        return {
            "q": self.search or None,
            "status": self.status or None,
            "source": self.source or None,
            "owner": str(self.owner) if self.owner else None,
            "order": self.order if self.order != "score" else None,
        }

    def export_query(self) -> str:
        """Return the query string of this filter's CSV export, or "" for none.

        An export is ordered by id, so the list's order is left out.
        """
        params = {
            name: value
            for name, value in self.keep().items()
            if value is not None and name != "order"
        }
        return "?" + urlencode(params) if params else ""

    @property
    def searches_company(self) -> bool:
        """False while the company is encrypted, since ciphertext never matches."""
        return "company" not in encrypted_columns(Lead)

    def conditions(self, args: list[object], access: Access = SYSTEM) -> str:
        parts = ["TRUE"]
        if self.search:
            parts.append(search_condition(self.search, args, access))
        if self.status:
            args.append(self.status)
            parts.append("l.status = {}")
        if self.source:
            args.append(self.source)
            parts.append("l.source = {}")
        if self.owner:
            args.append(self.owner)
            parts.append("l.owner = {}")
        return " AND ".join(parts)


def search_condition(search: str, args: list[object], access: Access = SYSTEM) -> str:
    """Return the condition that a lead's name, email or company contains
    ``search``, leaving out the fields hidden from ``access`` and the company
    while it is encrypted."""
    columns = searchable(
        access,
        "lead",
        Lead,
        {"name": "l.name", "email": "l.email", "company": "l.company"},
    )
    return contains_any(columns, search, args)


def decode_lead(row: dict[str, Any]) -> dict[str, Any]:
    row["answers"] = msgspec.json.decode(row["answers"] or "{}")
    row["score_factors"] = msgspec.json.decode(row["score_factors"] or "[]")
    row["owner_teams"] = list(row.get("owner_teams") or ())
    return row


async def get_lead(lead_id: int) -> dict[str, Any]:
    """Load a lead with its owner's name and teams and what it converted into."""
    rows = await Lead.raw(LEAD_SQL, lead_id)
    if not rows:
        raise NotFound("lead", lead_id)
    return decode_lead(rows[0])


async def search_leads(
    lead_filter: LeadFilter, paging: PageRequest, access: Access = SYSTEM
) -> Page[dict[str, Any]]:
    """List the leads ``access`` may read that pass the filter."""
    args: list[object] = []
    where = lead_filter.conditions(args, access)
    where += " AND " + scope_sql(access, "lead", "l", args)
    counted = await Lead.raw(f"SELECT count(*) AS n FROM lead l WHERE {where}", *args)
    total = counted[0]["n"]
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = await Lead.raw(
        f"""
        SELECT l.id, l.name, l.email, l.company, l.source, l.status, l.score,
            l.owner, u.name AS owner_name, l.created_at
        FROM lead l LEFT JOIN app_user u ON u.id = l.owner
        WHERE {where}
        ORDER BY {ORDERS[lead_filter.order]}
        LIMIT {{}} OFFSET {{}}
        """,
        *args,
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def list_sources() -> list[str]:
    rows = await Lead.raw(
        "SELECT DISTINCT source FROM lead WHERE source <> '' ORDER BY source LIMIT 200"
    )
    return [row["source"] for row in rows]


async def lead_activities(lead_id: int, limit: int = 20) -> list[dict[str, Any]]:
    return await Lead.raw(
        "SELECT a.id, a.kind, a.detail, a.occurred_at, u.name AS actor_name "
        "FROM lead_activity a LEFT JOIN app_user u ON u.id = a.actor "
        "WHERE a.lead = {} ORDER BY a.occurred_at DESC, a.id DESC LIMIT {}",
        lead_id,
        limit,
    )


# The lead board shows every status; converted leads are read-only there.
BOARD_STATUSES = STATUSES
BOARD_CARD_SQL = f"""
    SELECT l.id, l.name, l.company, l.status, l.score, l.owner,
        u.name AS owner_name, l.updated_at, {owner_teams_sql("l")} AS owner_teams
    FROM lead l LEFT JOIN app_user u ON u.id = l.owner
"""


@dataclass
class LeadColumn:
    status: str
    count: int = 0
    cards: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: Cursor | None = None


@dataclass
class LeadBoard:
    columns: list[LeadColumn]


def board_card(row: dict[str, Any]) -> dict[str, Any]:
    row["owner_teams"] = list(row.get("owner_teams") or ())
    return row


async def lead_status_counts(
    access: Access = SYSTEM, statuses: list[str] | None = None
) -> dict[str, int]:
    """Count the leads ``access`` may read per status."""
    args: list[object] = []
    where = scope_sql(access, "lead", "l", args)
    if statuses is not None:
        args.append(statuses)
        where += " AND l.status = ANY({})"
    rows = await Lead.raw(
        f"SELECT l.status, count(*) AS n FROM lead l WHERE {where} GROUP BY l.status",
        *args,
    )
    return {row["status"]: row["n"] for row in rows}


async def lead_column_cards(
    status: str,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
    access: Access = SYSTEM,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Return one page of a lead board column, most recently changed first.

    NOTE: the cursor is the last card's ``updated_at``, so a lead edited
    while someone scrolls the column moves to its top and a later page
    neither repeats nor shows it.
    """
    args: list[object] = [status]
    where = "l.status = {} AND " + scope_sql(access, "lead", "l", args)
    if after is not None:
        args.extend([after.at, after.id])
        where += " AND (l.updated_at, l.id) < ({}, {})"
    args.append(limit + 1)
    rows = await Lead.raw(
        f"{BOARD_CARD_SQL} WHERE {where} ORDER BY l.updated_at DESC, l.id DESC "
        "LIMIT {}",
        *args,
    )
    cards = [board_card(row) for row in rows]
    if len(cards) <= limit:
        return cards, None
    last = cards[limit - 1]
    return cards[:limit], Cursor(at=last["updated_at"], id=last["id"])


async def get_lead_board(access: Access = SYSTEM) -> LeadBoard:
    """Load the first page of every status column with the leads ``access`` reads."""
    counts = await lead_status_counts(access)
    columns = []
    for status in BOARD_STATUSES:
        cards, next_cursor = await lead_column_cards(status, access=access)
        columns.append(
            LeadColumn(
                status=status,
                count=counts.get(status, 0),
                cards=cards,
                next_cursor=next_cursor,
            )
        )
    return LeadBoard(columns=columns)


async def get_board_card(lead_id: int) -> dict[str, Any] | None:
    """Load one lead as a board card, or None when it no longer exists."""
    rows = await Lead.raw(f"{BOARD_CARD_SQL} WHERE l.id = {{}}", lead_id)
    return board_card(rows[0]) if rows else None


async def user_team_ids(user_id: int | None) -> list[int]:
    """Return the teams of a user, as ``owner_teams_sql`` selects them."""
    if user_id is None:
        return []
    rows = await Lead.raw(
        'SELECT m.team FROM team_member m WHERE m."user" = {} '
        "UNION SELECT u.team FROM app_user u WHERE u.id = {} AND u.team IS NOT NULL",
        user_id,
        user_id,
    )
    return [row["team"] for row in rows]
