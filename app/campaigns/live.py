"""The campaign page's counts and progress bar, pushed while it sends."""

from __future__ import annotations

from typing import Any

from app.campaigns.service import campaign_stats, get_campaign
from app.errors import NotFound
from app.web.templating import render
from realtime.messages import Event


async def progress_fragment(campaign_id: int) -> str:
    try:
        campaign = await get_campaign(campaign_id)
    except NotFound:
        return ""
    stats = await campaign_stats(campaign_id)
    return render("campaigns/_progress.html", campaign=campaign, stats=stats, oob=True)


async def render_campaign(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    fragment = await progress_fragment(event.record_id)
    return dict.fromkeys(variants, fragment)


async def snapshot_campaign(topic: str, variant: str) -> str:
    return await progress_fragment(int(topic.partition(":")[2]))
