"""Fragments pushed to the ticket board ("tickets") and ticket pages ("ticket:<id>")."""

from __future__ import annotations

from typing import Any

from app.boards import BoardFilter, place_card
from app.comments.live import render_new_comment
from app.comments.service import timeline
from app.tickets import queries
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


async def render_ticket_board(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "board.reload":
        return {
            variant: render("tickets/_reload.html", query=variant)
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

    card = card_oob = ""
    if ticket is not None:
        card = render("tickets/_card.html", ticket=ticket)
        card_oob = render("tickets/_card.html", ticket=ticket, oob=True)

    fragments = {}
    for variant in variants:
        board_filter = BoardFilter.from_key(variant)
        if board_filter == BoardFilter():
            column_counts = counts
        else:
            column_counts = await queries.status_counts(board_filter, sorted(statuses))

        placement = place_card(board_filter, ticket, "assignee", moved, reassigned)
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


async def render_ticket_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "comment.created":
        text = await render_new_comment(event, cache)
    elif event.record_type == "ticket":
        ticket, _ = await load_ticket(event, cache)
        text = (
            render("tickets/_summary.html", ticket=ticket, oob=True) if ticket else ""
        )
    else:
        text = ""
    return dict.fromkeys(variants, text)


async def snapshot_ticket_board(topic: str, variant: str) -> str:
    board = await queries.get_board(BoardFilter.from_key(variant))
    return render("tickets/_board.html", board=board, oob=True)


async def snapshot_ticket_page(topic: str, variant: str) -> str:
    ticket_id = int(topic.partition(":")[2])
    ticket = await queries.get_ticket(ticket_id)
    comments = await timeline("ticket", ticket_id)
    return render("tickets/_summary.html", ticket=ticket, oob=True) + render(
        "comments/_list.html", comments=comments, oob=True
    )
