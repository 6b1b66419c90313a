"""Live updates of the forecast page, which follows the pipeline streams.

The forecast page subscribes to each pipeline's stream with ``view=forecast``
on its socket (``FORECAST``, see ``app.web.stream_views``), so its variants
get a small fragment instead of board cards. The fragment makes the page
fetch its totals again (``GET /forecast/totals`` with the page's own filter
form), so the figures are always computed by the same request handler,
under the viewer's access, as the page itself.
"""

from __future__ import annotations

from typing import Any

from app.access.scopes import permits_record
from app.access.views import split_variant
from app.deals.live import before_change, load_deal
from app.web.stream_views import StreamView
from app.web.templating import render
from realtime.messages import Event


def refresh_fragment() -> str:
    return render("forecast/_refresh.html")


async def render_forecast(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    """Send the refresh to viewers who may read the deal before or after the change."""
    if event.kind == "board.reload":
        return dict.fromkeys(variants, refresh_fragment())
    if event.record_type != "deal":
        return dict.fromkeys(variants, "")
    deal, _ = await load_deal(event, cache)
    before = before_change(event, deal)
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        touched = (
            deal is not None and permits_record(access, "deal", "read", deal)
        ) or permits_record(access, "deal", "read", before)
        fragments[variant] = refresh_fragment() if touched else ""
    return fragments


async def snapshot_forecast(topic: str, variant: str) -> str:
    return refresh_fragment()


FORECAST = StreamView("forecast", render_forecast, snapshot_forecast)
FORECAST_KEY = FORECAST.key
