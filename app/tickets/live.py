"""Fragments pushed to the ticket board ("tickets") and ticket pages ("ticket:<id>").

Each variant carries its viewers' access (``app.access.views``): a variant
gets the card only when its viewers may read the ticket, and a variant
with nothing to show gets an empty fragment with the sequence number.
"""

from __future__ import annotations

from typing import Any

from app.access.permissions import Access
from app.access.scopes import comment_permits, permits_record, redact
from app.access.views import split_variant, view_key
from app.boards import BoardFilter, place_card
from app.comments.live import render_new_comment
from app.comments.service import timeline
from app.tasks.live import render_task_list, task_list_html
from app.tasks.service import record_tasks
from app.tickets import queries
from app.web.deletion import render_deleted_notice
from app.web.templating import render
from realtime.messages import Event


def touched_statuses(event: Event) -> list[str]:
    changed = event.changes.get("status")
    return [status for status in changed if status] if changed else []


async def load_ticket(event: Event, cache: dict[str, Any]) -> tuple[Any, Any]:
    key = f"ticket:{event.record_id}"
    if key not in cache:
        cache[key] = await queries.get_ticket_with_counts(
            event.record_id, touched_statuses(event)
        )
    return cache[key]


def before_change(event: Event, ticket: dict[str, Any] | None) -> dict[str, Any]:
    """Return the assignee and team the ticket had before the event."""
    before = {"assignee": None, "team": None} if ticket is None else dict(ticket)
    for name in ("assignee", "team"):
        change = event.changes.get(name)
        if isinstance(change, list) and len(change) == 2:
            before[name] = change[0]
    return before


async def render_ticket_board(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "board.reload":
        return {
            variant: render("tickets/_reload.html", query=split_variant(variant)[0])
            for variant in variants
        }
    if event.record_type != "ticket":
        return dict.fromkeys(variants, "")

    ticket, counts = await load_ticket(event, cache)
    moved = event.kind == "ticket.created" or "status" in event.changes
    reassigned = "assignee" in event.changes or "team" in event.changes
    statuses = set(touched_statuses(event))
    if ticket is not None:
        statuses.add(ticket["status"])
    before = before_change(event, ticket)

    cards: dict[str, tuple[str, str]] = {}
    fragments = {}
    for variant in variants:
        board_key, access = split_variant(variant)
        readable = ticket is not None and permits_record(
            access, "ticket", "read", ticket
        )
        if not (readable or permits_record(access, "ticket", "read", before)):
            fragments[variant] = ""
            continue

        card = card_oob = ""
        if readable:
            view = view_key(variant)
            if view not in cards:
                shown = redact(access, "ticket", ticket)
                cards[view] = (
                    render("tickets/_card.html", ticket=shown, access=access),
                    render("tickets/_card.html", ticket=shown, access=access, oob=True),
                )
            card, card_oob = cards[view]

        board_filter = BoardFilter.from_key(board_key)
        column_counts = await counts_for(board_filter, access, sorted(statuses), counts)
        restricted = access.scope("ticket", "read") != "all"
        placement = place_card(
            board_filter,
            ticket if card else None,
            "assignee",
            moved,
            reassigned,
            restricted,
        )
        fragments[variant] = render(
            "tickets/_live_update.html",
            ticket_id=event.record_id,
            card=card,
            card_oob=card_oob,
            card_status=ticket["status"] if ticket else None,
            placement=placement,
            heads=[
                (status, column_counts.get(status, 0)) for status in sorted(statuses)
            ],
        )
    return fragments


async def counts_for(
    board_filter: BoardFilter,
    access: Access,
    statuses: list[str],
    counts: dict[str, int],
) -> dict[str, int]:
    """Return the column heads' counts in this variant's filter and scope."""
    if board_filter == BoardFilter() and access.scope("ticket", "read") == "all":
        return counts
    return await queries.status_counts(board_filter, statuses, access)


async def render_ticket_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    ticket_id = int(topic.partition(":")[2])
    if event.kind == "comment.created":
        ticket = await load_page_ticket(ticket_id, cache)
        return {
            variant: await render_new_comment(event, cache, split_variant(variant)[1])
            if can_read_comments(variant, ticket)
            else ""
            for variant in variants
        }
    if event.record_type == "task":
        return await render_task_list("ticket", ticket_id, variants, cache)
    if event.kind == "ticket.deleted":
        return await render_deleted_notice(event, variants)
    if event.record_type != "ticket":
        return dict.fromkeys(variants, "")

    ticket, _ = await load_ticket(event, cache)
    before = before_change(event, ticket)
    summaries: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if ticket is None or not permits_record(access, "ticket", "read", ticket):
            lost = permits_record(access, "ticket", "read", before)
            fragments[variant] = (
                render("_access_lost.html", record_type="ticket", record_id=ticket_id)
                if lost
                else ""
            )
            continue
        view = view_key(variant)
        if view not in summaries:
            summaries[view] = render(
                "tickets/_summary.html",
                ticket=redact(access, "ticket", ticket),
                access=access,
                oob=True,
            )
        fragments[variant] = summaries[view]
    return fragments


async def load_page_ticket(
    ticket_id: int, cache: dict[str, Any]
) -> dict[str, Any] | None:
    key = f"ticket-row:{ticket_id}"
    if key not in cache:
        ticket, _ = await queries.get_ticket_with_counts(ticket_id, [])
        cache[key] = ticket
    result: dict[str, Any] | None = cache[key]
    return result


def can_read_comments(variant: str, ticket: dict[str, Any] | None) -> bool:
    _, access = split_variant(variant)
    return ticket is not None and comment_permits(access, "read", "ticket", ticket)


async def snapshot_ticket_board(topic: str, variant: str) -> str:
    board_key, access = split_variant(variant)
    board = await queries.get_board(BoardFilter.from_key(board_key), access)
    return render("tickets/_board.html", board=board, access=access, oob=True)


async def snapshot_ticket_page(topic: str, variant: str) -> str:
    ticket_id = int(topic.partition(":")[2])
    _, access = split_variant(variant)
    ticket = await queries.get_ticket(ticket_id)
    if not permits_record(access, "ticket", "read", ticket):
        return ""
    text = render(
        "tickets/_summary.html",
        ticket=redact(access, "ticket", ticket),
        access=access,
        oob=True,
    )
    if can_read_comments(variant, ticket):
        comments = await timeline("ticket", ticket_id)
        text += render(
            "comments/_list.html", comments=comments, access=access, oob=True
        )
    can_edit = permits_record(access, "ticket", "edit", ticket)
    tasks = await record_tasks("ticket", ticket_id)
    text += task_list_html("ticket", ticket_id, tasks, can_edit)
    return text
