"""The fragments that show who else is on a page and what they are doing."""

from __future__ import annotations

from app.accounts.service import EDITABLE as ACCOUNT_FIELDS
from app.contacts.service import EDITABLE as CONTACT_FIELDS
from app.deals.service import EDITABLE as DEAL_FIELDS
from app.tickets.service import EDITABLE as TICKET_FIELDS
from app.web.templating import render
from realtime.messages import Viewer

# The fields whose "is editing" markers a record page shows.
RECORD_FIELDS = {
    "deal": DEAL_FIELDS,
    "ticket": TICKET_FIELDS,
    "account": ACCOUNT_FIELDS,
    "contact": CONTACT_FIELDS,
}


# Avatars shown on a page; the rest are counted ("+40").
SHOWN_VIEWERS = 12


def presence_slug(topic: str) -> str:
    return topic.replace(":", "-")


def render_presence(topic: str, viewers: list[Viewer]) -> str:
    fields = RECORD_FIELDS.get(topic.partition(":")[0], ())
    editors = {
        field: [viewer for viewer in viewers if viewer.editing == field]
        for field in fields
    }
    return render(
        "_presence.html",
        slug=presence_slug(topic),
        viewers=viewers[:SHOWN_VIEWERS],
        more=max(0, len(viewers) - SHOWN_VIEWERS),
        editors=editors,
        typists=[viewer for viewer in viewers if viewer.typing],
        is_record=bool(fields),
    )
