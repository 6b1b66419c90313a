"""Fragments pushed to lead pages ("lead:<id>"), the lead list ("leads") and
the lead board ("lead-board").

A lead page gets its summary and its score panel again after every change
of the lead, including a new score from the rescoring job. The list gets
the changed row, which replaces the row of the same id if the page shows it.
The board gets the changed card in its column and the counts of the
columns it touched. All go only to variants whose viewers may read the
lead, except that a board whose viewers could read it before the change
gets a fragment that removes the card.
"""

from __future__ import annotations

import logging
from typing import Any

from app.access.scopes import permits_record, redact
from app.access.views import split_variant, view_key
from app.errors import NotFound
from app.leads import queries
from app.leads.queries import BOARD_STATUSES
from app.web.templating import render
from realtime.messages import Event

logger = logging.getLogger(__name__)


async def load_event_lead(event: Event, cache: dict[str, Any]) -> dict[str, Any] | None:
    key = f"lead:{event.record_id}"
    if key not in cache:
        try:
            cache[key] = await queries.get_lead(event.record_id)
        except NotFound:
            logger.info(
                "lead not found for a pushed update lead_id=%s", event.record_id
            )
            cache[key] = None
    lead: dict[str, Any] | None = cache[key]
    return lead


def before_owner(event: Event, lead: dict[str, Any]) -> dict[str, Any]:
    """Return the lead as its owner was before the event, for lost access."""
    before = dict(lead)
    change = event.changes.get("owner")
    if isinstance(change, list) and len(change) == 2:
        before["owner"] = change[0]
        before["owner_teams"] = []
    return before


def page_fragments(lead: dict[str, Any], access: Any) -> str:
    shown = redact(access, "lead", lead)
    return render("leads/_summary.html", lead=shown, oob=True) + render(
        "leads/_score.html", lead=shown, oob=True
    )


async def render_lead_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.record_type != "lead":
        return dict.fromkeys(variants, "")
    lead = await load_event_lead(event, cache)
    if lead is None:
        return dict.fromkeys(variants, "")
    before = before_owner(event, lead)
    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if not permits_record(access, "lead", "read", lead):
            lost = permits_record(access, "lead", "read", before)
            fragments[variant] = (
                render("_access_lost.html", record_type="lead", record_id=lead["id"])
                if lost
                else ""
            )
            continue
        view = view_key(variant)
        if view not in rendered:
            rendered[view] = page_fragments(lead, access)
        fragments[variant] = rendered[view]
    return fragments


async def render_lead_list(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.record_type != "lead" or event.kind == "lead.created":
        # A new lead's place depends on each page's filter and order; the
        # list shows it on the next load.
        return dict.fromkeys(variants, "")
    lead = await load_event_lead(event, cache)
    if lead is None:
        return dict.fromkeys(variants, "")
    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if not permits_record(access, "lead", "read", lead):
            fragments[variant] = ""
            continue
        view = view_key(variant)
        if view not in rendered:
            rendered[view] = render(
                "leads/_row.html", lead=redact(access, "lead", lead), oob=True
            )
        fragments[variant] = rendered[view]
    return fragments


async def snapshot_lead_page(topic: str, variant: str) -> str:
    lead_id = int(topic.partition(":")[2])
    _, access = split_variant(variant)
    lead = await queries.get_lead(lead_id)
    if not permits_record(access, "lead", "read", lead):
        return ""
    return page_fragments(lead, access)


async def previous_board_card(
    event: Event, card: dict[str, Any] | None, cache: dict[str, Any]
) -> dict[str, Any]:
    """Return the card's owner and teams before the event, for lost access.

    A deleted lead has no card any more, so viewers who read every lead get
    a fragment that removes it.
    """
    change = event.changes.get("owner")
    if not (isinstance(change, list) and len(change) == 2):
        return card if card is not None else {"owner": None, "owner_teams": []}
    key = f"lead-board-before:{event.record_id}"
    if key not in cache:
        cache[key] = {
            "owner": change[0],
            "owner_teams": await queries.user_team_ids(change[0]),
        }
    before: dict[str, Any] = cache[key]
    return before


def touched_statuses(event: Event, card: dict[str, Any] | None) -> list[str]:
    """Return the columns whose counts the event may have changed."""
    if card is None:
        return list(BOARD_STATUSES)
    statuses = {card["status"]}
    changed = event.changes.get("status")
    if isinstance(changed, list):
        statuses.update(status for status in changed if status in BOARD_STATUSES)
    return sorted(statuses)


async def render_lead_board(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "board.reload":
        return dict.fromkeys(variants, render("leads/_board_reload.html"))
    if event.record_type != "lead":
        return dict.fromkeys(variants, "")
    key = f"lead-board:{event.record_id}"
    if key not in cache:
        cache[key] = await queries.get_board_card(event.record_id)
    card: dict[str, Any] | None = cache[key]
    before = await previous_board_card(event, card, cache)
    moved = event.kind == "lead.created" or "status" in event.changes
    statuses = touched_statuses(event, card)

    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        readable = card is not None and permits_record(access, "lead", "read", card)
        was_readable = permits_record(access, "lead", "read", before)
        if not (readable or was_readable):
            fragments[variant] = ""
            continue
        view = view_key(variant)
        if view not in rendered:
            rendered[view] = await board_update(
                event, card if readable else None, access, moved, statuses
            )
        fragments[variant] = rendered[view]
    return fragments


async def board_update(
    event: Event,
    card: dict[str, Any] | None,
    access: Any,
    moved: bool,
    statuses: list[str],
) -> str:
    """Render one view's update. ``card`` is None when the viewer lost the lead."""
    shown = redact(access, "lead", card) if card is not None else None
    counts = await queries.lead_status_counts(access, statuses)
    # Under a narrower scope than "all" a new owner can bring the card onto
    # the board, so it goes to the top of its column like a moved card.
    reassigned = "owner" in event.changes and access.scope("lead", "read") != "all"
    relocated = moved or reassigned
    return render(
        "leads/_board_update.html",
        lead_id=event.record_id,
        remove=shown is None or relocated,
        insert_at_top=relocated,
        card=render("leads/_board_card.html", lead=shown, access=access)
        if shown
        else "",
        card_oob=render("leads/_board_card.html", lead=shown, access=access, oob=True)
        if shown
        else "",
        card_status=shown["status"] if shown else None,
        heads=[(status, counts.get(status, 0)) for status in statuses],
    )


async def snapshot_lead_board(topic: str, variant: str) -> str:
    _, access = split_variant(variant)
    board = await queries.get_lead_board(access)
    return render("leads/_board.html", board=board, access=access, oob=True)
