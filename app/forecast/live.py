"""Live updates of the forecast page, which follows the pipeline streams.

The forecast page subscribes to each pipeline's stream with ``view=forecast``
on its socket, which puts ``FORECAST_KEY`` where a board's filter would be
in the subscription's variant. ``with_forecast`` wraps the board's renderer
so those variants get a small fragment instead of board cards. The fragment
makes the page fetch its totals again (``GET /forecast/totals`` with the
page's own filter form), so the figures are always computed by the same
request handler, under the viewer's access, as the page itself.
"""

from __future__ import annotations

from typing import Any

from app.access.scopes import permits_record
from app.access.views import SEPARATOR, split_variant
from app.deals.live import before_change, load_deal
from app.web.templating import render
from realtime.hub import Renderer, Snapshot
from realtime.messages import Event

FORECAST_VIEW = "forecast"
FORECAST_KEY = "view=forecast"


def forecast_variant(variant: str) -> str:
    """Return the forecast page's variant of a pipeline subscription's ``variant``."""
    return FORECAST_KEY + SEPARATOR + variant.partition(SEPARATOR)[2]


def is_forecast(variant: str) -> bool:
    return variant.partition(SEPARATOR)[0] == FORECAST_KEY


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


def with_forecast(renderer: Renderer, snapshot: Snapshot) -> tuple[Renderer, Snapshot]:
    """Wrap a pipeline renderer and snapshot so forecast variants get their own."""

    async def render_both(
        event: Event, topic: str, variants: set[str], cache: dict[str, Any]
    ) -> dict[str, str]:
        forecast = {variant for variant in variants if is_forecast(variant)}
        boards = variants - forecast
        fragments = await renderer(event, topic, boards, cache) if boards else {}
        if forecast:
            fragments.update(await render_forecast(event, topic, forecast, cache))
        return fragments

    async def snapshot_both(topic: str, variant: str) -> str:
        if is_forecast(variant):
            return refresh_fragment()
        return await snapshot(topic, variant)

    return render_both, snapshot_both
