"""Reading the ticket board and tickets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.access.permissions import SYSTEM, Access
from app.access.scopes import redact_rows, scope_sql
from app.boards import PAGE_SIZE, BoardFilter, Cursor
from app.errors import NotFound
from app.sla import queries as sla_queries
from app.tickets.tables import STATUSES, Ticket

CARD_COLUMNS = """
    t.id, t.subject, t.status, t.priority, t.channel, t.type, t.version,
    t.assignee, t.team, t.requester, t.account, t.created_at, t.status_changed_at,
    u.name AS assignee_name,
    nullif(trim(c.first_name || ' ' || c.last_name), '') AS requester_name,
    c.email AS requester_email
"""
CARD_JOINS = """
    FROM ticket t
    LEFT JOIN app_user u ON u.id = t.assignee
    LEFT JOIN contact c ON c.id = t.requester
"""
# Cards and ticket pages show the running SLA clock that is due soonest.
CARD_COLUMNS += "," + sla_queries.CARD_COLUMNS
CARD_JOINS += sla_queries.CARD_JOIN
DETAIL_COLUMNS = """
    t.description, t.updated_at, tm.name AS team_name, a.name AS account_name
"""
DETAIL_JOINS = """
    LEFT JOIN team tm ON tm.id = t.team
    LEFT JOIN account a ON a.id = t.account
"""


@dataclass
class StatusColumn:
    status: str
    count: int = 0
    cards: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: Cursor | None = None


@dataclass
class TicketBoard:
    columns: list[StatusColumn]
    filter: BoardFilter


def ticket_conditions(
    board_filter: BoardFilter, access: Access, args: list[object]
) -> str:
    """Return " AND ..." conditions of a board filter and the viewer's scope."""
    condition = board_filter.sql("t.assignee", "t.team", args)
    return condition + " AND " + scope_sql(access, "ticket", "t", args)


async def status_counts(
    board_filter: BoardFilter,
    statuses: list[str] | None = None,
    access: Access = SYSTEM,
) -> dict[str, int]:
    args: list[object] = []
    where = "TRUE" + ticket_conditions(board_filter, access, args)
    if statuses is not None:
        args.append(statuses)
        where += " AND t.status = ANY({})"
    rows = await Ticket.raw(
        f"SELECT t.status, count(*) AS n FROM ticket t WHERE {where} GROUP BY t.status",
        *args,
    )
    return {row["status"]: row["n"] for row in rows}


async def column_cards(
    status: str,
    board_filter: BoardFilter,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
    access: Access = SYSTEM,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Return one page of a status column, latest status change first,
    without the fields hidden from ``access``."""
    args: list[object] = [status]
    where = "t.status = {}" + ticket_conditions(board_filter, access, args)
    if after is not None:
        args.extend([after.at, after.id])
        where += " AND (t.status_changed_at, t.id) < ({}, {})"
    args.append(limit + 1)
    rows = await Ticket.raw(
        f"SELECT {CARD_COLUMNS} {CARD_JOINS} WHERE {where} "
        "ORDER BY t.status_changed_at DESC, t.id DESC LIMIT {}",
        *args,
    )
    if len(rows) <= limit:
        return redact_rows(access, "ticket", rows), None
    last = rows[limit - 1]
    cursor = Cursor(at=last["status_changed_at"], id=last["id"])
    return redact_rows(access, "ticket", rows[:limit]), cursor


async def get_board(board_filter: BoardFilter, access: Access = SYSTEM) -> TicketBoard:
    """Load the ticket board with the tickets ``access`` may read, without
    the fields hidden from it."""
    counts = await status_counts(board_filter, access=access)
    first_pages = await first_pages_of_columns(board_filter, access)
    columns = []
    for status in STATUSES:
        column = StatusColumn(status=status, count=counts.get(status, 0))
        cards = first_pages.get(status, [])
        column.cards = redact_rows(access, "ticket", cards[:PAGE_SIZE])
        if len(cards) > PAGE_SIZE:
            last = cards[PAGE_SIZE - 1]
            column.next_cursor = Cursor(at=last["status_changed_at"], id=last["id"])
        columns.append(column)
    return TicketBoard(columns=columns, filter=board_filter)


async def first_pages_of_columns(
    board_filter: BoardFilter, access: Access = SYSTEM
) -> dict[str, list[dict[str, Any]]]:
    """Return the first page (plus one card) of every status column in one query."""
    args: list[object] = [list(STATUSES)]
    condition = ticket_conditions(board_filter, access, args)
    args.append(PAGE_SIZE + 1)
    rows = await Ticket.raw(
        "SELECT c.* FROM unnest({}::varchar[]) AS s(status) CROSS JOIN LATERAL ("
        f"  SELECT {CARD_COLUMNS} {CARD_JOINS}"
        f"  WHERE t.status = s.status {condition}"
        "   ORDER BY t.status_changed_at DESC, t.id DESC LIMIT {}"
        ") c ORDER BY c.status, c.status_changed_at DESC, c.id DESC",
        *args,
    )
    pages: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        pages.setdefault(row["status"], []).append(row)
    return pages


async def get_ticket(ticket_id: int) -> dict[str, Any]:
    rows = await Ticket.raw(
        f"SELECT {CARD_COLUMNS}, {DETAIL_COLUMNS} {CARD_JOINS} {DETAIL_JOINS} "
        "WHERE t.id = {}",
        ticket_id,
    )
    if not rows:
        raise NotFound("ticket", ticket_id)
    return rows[0]


async def get_ticket_with_counts(
    ticket_id: int, statuses: list[str]
) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """Load a ticket and the unfiltered counts of its status and ``statuses``.

    One query serves the board cards, column heads and the ticket's page.
    """
    rows = await Ticket.raw(
        f"SELECT {CARD_COLUMNS}, {DETAIL_COLUMNS}, ("
        "  SELECT coalesce(json_object_agg(x.status, x.n), json_build_object())::text"
        "  FROM (SELECT status, count(*) AS n FROM ticket"
        "        WHERE status = ANY({}) OR status = t.status GROUP BY status) x"
        f") AS counts {CARD_JOINS} {DETAIL_JOINS} WHERE t.id = {{}}",
        statuses,
        ticket_id,
    )
    if not rows:
        return None, {}

    ticket = dict(rows[0])
    counts = msgspec.json.decode(ticket.pop("counts"))
    return ticket, counts
