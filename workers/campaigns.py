"""Campaign jobs: the dispatcher that starts due campaigns, and the sender."""

from __future__ import annotations

import logging
from typing import Any

from arq.worker import Function, func

from app.campaigns.sending import SLICE_SECONDS, due_campaigns, run_campaign
from app.config import Settings

logger = logging.getLogger(__name__)


async def send_campaign(ctx: dict[str, Any], campaign_id: int) -> str:
    """Send one campaign for a slice of time; see app.campaigns.sending."""
    settings: Settings = ctx.get("settings") or Settings.from_env()
    try:
        return await run_campaign(campaign_id, settings)
    except Exception:
        logger.exception(
            "campaign sender failed campaign_id=%s job_id=%s",
            campaign_id,
            ctx.get("job_id"),
        )
        raise


# A sender that dies is replaced by the dispatcher, never by arq's retry, so
# the lease alone decides who sends.
send_campaign_job: Function = func(
    send_campaign, max_tries=1, keep_result=0, timeout=SLICE_SECONDS + 120
)


async def start_due_campaigns(ctx: dict[str, Any]) -> int:
    """Queue a sender for every due campaign and every campaign whose sender
    stopped; a sender that finds a live lease exits at once."""
    campaign_ids = await due_campaigns()
    for campaign_id in campaign_ids:
        await ctx["redis"].enqueue_job("send_campaign", campaign_id)
    if campaign_ids:
        logger.info("campaign senders queued campaign_ids=%s", campaign_ids)
    return len(campaign_ids)
