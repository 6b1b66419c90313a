"""Fragments pushed to account pages ("account:<id>").

Each variant carries its viewers' access (``app.access.views``): the
summary goes only to viewers who may read the account, without the fields
hidden from them, and a contact's row only to viewers who may read it.
"""

from __future__ import annotations

import logging
from typing import Any

from app.access.permissions import Access
from app.access.scopes import permits_record, redact
from app.access.views import split_variant, view_key
from app.accounts import queries
from app.errors import NotFound
from app.web.deletion import deleted_row, render_deleted_notice
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


async def render_contact_change(
    event: Event, account_id: int, access: Access, contact: dict[str, Any] | None
) -> str:
    """Update the account page's contact list after a contact changed.

    A contact still at the account gets its row replaced, and one that left,
    was deleted, or left the viewer's scope, gets it removed. One that joined is not
    inserted, because its place depends on the page of the list each viewer
    has open, so the list shows a link to reload it instead. The heading's
    count, of the contacts the viewer may read, is always updated.
    """
    if contact is None:
        return ""
    # A deleted contact is its row as it was, which only its former readers had.
    deleted = event.kind == "contact.deleted"
    readable = permits_record(access, "contact", "read", contact)
    owner_change = event.changes.get("owner")
    if not readable and (deleted or not owner_change):
        return ""

    moved = event.changes.get("account")
    if deleted or contact["account"] != account_id or not readable:
        change = "left"
    elif moved is not None and moved[0] != account_id:
        change = "joined"
    else:
        change = "changed"
    if access.scope("contact", "read") == "all" and not deleted:
        count = contact["contact_count"]
    else:
        count = await queries.count_contacts(account_id, access)
    return render(
        "accounts/_contact_update.html",
        account_id=account_id,
        contact=redact(access, "contact", contact),
        contact_count=count,
        access=access,
        change=change,
    )


async def render_account_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    account_id = int(topic.partition(":")[2])
    if event.record_type not in ("account", "contact"):
        return dict.fromkeys(variants, "")
    if event.kind == "account.deleted":
        return await render_deleted_notice(event, variants)

    account = await load_account(account_id, cache)
    contact = None
    if event.kind == "contact.deleted":
        contact = await deleted_row(event)
    elif event.record_type == "contact":
        contact = await queries.get_contact_row(event.record_id, account_id)

    texts: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if account is None or not permits_record(access, "account", "read", account):
            fragments[variant] = ""
            continue
        view = view_key(variant)
        if view not in texts:
            if event.record_type == "account":
                texts[view] = render(
                    "accounts/_summary.html",
                    account=redact(access, "account", account),
                    access=access,
                    oob=True,
                )
            else:
                texts[view] = await render_contact_change(
                    event, account_id, access, contact
                )
        fragments[variant] = texts[view]
    return fragments


async def snapshot_account_page(topic: str, variant: str) -> str:
    """Render the summary and the contact count afresh.

    The rows of the contact list depend on the page each viewer has open,
    so instead of them the list shows a link to reload it.
    """
    account_id = int(topic.partition(":")[2])
    _, access = split_variant(variant)
    account = await queries.get_account(account_id, access)
    if not permits_record(access, "account", "read", account):
        return ""
    summary = render(
        "accounts/_summary.html",
        account=redact(access, "account", account),
        access=access,
        oob=True,
    )
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
