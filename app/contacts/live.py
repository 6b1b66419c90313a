"""Fragments pushed to contact pages ("contact:<id>").

The summary goes only to variants whose viewers may read the contact, and
without the fields hidden from them (see ``app.access.views``).
"""

from __future__ import annotations

import logging
from typing import Any

from app.access.scopes import permits_record, redact
from app.access.views import split_variant, view_key
from app.contacts import queries
from app.errors import NotFound
from app.web.deletion import render_deleted_notice
from app.web.templating import render
from realtime.messages import Event

logger = logging.getLogger(__name__)


async def render_contact_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    contact_id = int(topic.partition(":")[2])
    if event.record_type != "contact":
        return dict.fromkeys(variants, "")
    if event.kind == "contact.deleted":
        return await render_deleted_notice(event, variants)
    try:
        contact = await queries.get_contact(contact_id)
    except NotFound:
        logger.info("contact not found for a pushed update contact_id=%s", contact_id)
        return dict.fromkeys(variants, "")

    summaries: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if not permits_record(access, "contact", "read", contact):
            fragments[variant] = ""
            continue
        view = view_key(variant)
        if view not in summaries:
            summaries[view] = render(
                "contacts/_summary.html",
                contact=redact(access, "contact", contact),
                access=access,
                oob=True,
            )
        fragments[variant] = summaries[view]
    return fragments


async def snapshot_contact_page(topic: str, variant: str) -> str:
    contact_id = int(topic.partition(":")[2])
    _, access = split_variant(variant)
    contact = await queries.get_contact(contact_id)
    if not permits_record(access, "contact", "read", contact):
        return ""
    return render(
        "contacts/_summary.html",
        contact=redact(access, "contact", contact),
        access=access,
        oob=True,
    )
