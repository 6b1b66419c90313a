"""Live rows of the deal list, which follows the pipeline streams.

The list subscribes to the stream of each pipeline it shows with
``view=deal-list`` on its socket (``DEAL_LIST``, see
``app.web.stream_views``). A changed deal's row replaces the row of the
same id where a page shows it, drawn for each access view without the
fields hidden from it. A page whose viewers could read the deal before the
change but not after it, or whose deal was deleted, gets a fragment that
removes the row. A new deal's place depends on each page's filters and
order, so a page shows it on its next load. A reload of the pipeline (an
import, a stage change) and a fresh render make the page fetch its rows
again with its own parameters.
"""

from __future__ import annotations

from typing import Any

from app.access.scopes import permits_record
from app.access.views import split_variant, view_key
from app.deals.listing import get_row, redact_row
from app.deals.live import before_change
from app.web.stream_views import StreamView
from app.web.templating import render
from realtime.messages import Event


def refresh_fragment() -> str:
    return render("deals/_list_refresh.html")


async def load_row(event: Event, cache: dict[str, Any]) -> dict[str, Any] | None:
    """Load the changed deal as the list shows it, once per event."""
    key = f"deal-list-row:{event.record_id}"
    if key not in cache:
        cache[key] = await get_row(event.record_id)
    row: dict[str, Any] | None = cache[key]
    return row


async def render_deal_rows(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "board.reload":
        return dict.fromkeys(variants, refresh_fragment())
    if event.record_type != "deal" or event.kind == "deal.created":
        return dict.fromkeys(variants, "")

    row = await load_row(event, cache)
    before = before_change(event, row)
    rendered: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if row is not None and permits_record(access, "deal", "read", row):
            view = view_key(variant)
            if view not in rendered:
                rendered[view] = render(
                    "deals/_list_row.html",
                    deal=redact_row(access, row),
                    access=access,
                    oob=True,
                )
            fragments[variant] = rendered[view]
        elif permits_record(access, "deal", "read", before):
            fragments[variant] = render(
                "deals/_list_row_removed.html", deal_id=event.record_id
            )
        else:
            fragments[variant] = ""
    return fragments


async def snapshot_deal_rows(topic: str, variant: str) -> str:
    return refresh_fragment()


DEAL_LIST = StreamView("deal-list", render_deal_rows, snapshot_deal_rows)
