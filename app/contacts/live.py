"""Fragments pushed to contact pages ("contact:<id>")."""

from __future__ import annotations

import logging
from typing import Any

from app.contacts import queries
from app.errors import NotFound
from app.web.templating import render
from realtime.messages import Event

logger = logging.getLogger(__name__)


async def render_contact_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    contact_id = int(topic.partition(":")[2])
    text = ""
    if event.record_type == "contact":
        try:
            contact = await queries.get_contact(contact_id)
        except NotFound:
            logger.info(
                "contact not found for a pushed update contact_id=%s", contact_id
            )
            contact = None
        if contact is not None:
            text = render("contacts/_summary.html", contact=contact, oob=True)
    return dict.fromkeys(variants, text)


async def snapshot_contact_page(topic: str, variant: str) -> str:
    contact_id = int(topic.partition(":")[2])
    contact = await queries.get_contact(contact_id)
    return render("contacts/_summary.html", contact=contact, oob=True)
