"""Fragments pushed to account pages ("account:<id>")."""

from __future__ import annotations

import logging
from typing import Any

from app.accounts import queries
from app.errors import NotFound
from app.web.templating import render
from realtime.messages import Event

logger = logging.getLogger(__name__)


async def load_account(account_id: int, cache: dict[str, Any]) -> Any:
    """Load the account once per event, or None when it no longer exists."""
    key = f"account:{account_id}"
    if key not in cache:
        try:
            cache[key] = await queries.get_account(account_id)
        except NotFound:
            logger.info(
                "account not found for a pushed update account_id=%s", account_id
            )
            cache[key] = None
    return cache[key]


async def render_contact_change(event: Event, account_id: int) -> str:
    """Update the account page's contact list after a contact changed.

    A contact still at the account gets its row replaced, and one that left
    gets it removed. One that joined is not inserted, because its place
    depends on the page of the list each viewer has open, so the list shows
    a link to reload it instead. The heading's count is always updated.
    """
    contact = await queries.get_contact_row(event.record_id, account_id)
    if contact is None:
        return ""

    moved = event.changes.get("account")
    if contact["account"] != account_id:
        change = "left"
    elif moved is not None and moved[0] != account_id:
        change = "joined"
    else:
        change = "changed"
    return render(
        "accounts/_contact_update.html",
        account_id=account_id,
        contact=contact,
        contact_count=contact["contact_count"],
        change=change,
    )


async def render_account_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    account_id = int(topic.partition(":")[2])
    text = ""
    if event.record_type == "account":
        account = await load_account(account_id, cache)
        if account is not None:
            text = render("accounts/_summary.html", account=account, oob=True)
    elif event.record_type == "contact":
        text = await render_contact_change(event, account_id)
    return dict.fromkeys(variants, text)


async def snapshot_account_page(topic: str, variant: str) -> str:
    """Render the summary and the contact count afresh.

    The rows of the contact list depend on the page each viewer has open,
    so instead of them the list shows a link to reload it.
    """
    account_id = int(topic.partition(":")[2])
    account = await queries.get_account(account_id)
    summary = render("accounts/_summary.html", account=account, oob=True)
    heading = render(
        "accounts/_contacts_heading.html",
        account_id=account_id,
        contact_count=account["contact_count"],
        oob=True,
    )
    notice = render(
        "accounts/_contacts_changed.html", account_id=account_id, stale=True, oob=True
    )
    return summary + heading + notice
