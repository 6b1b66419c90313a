"""Campaign jobs: the dispatcher that starts due campaigns, the sender, and
test messages."""

from __future__ import annotations

import contextlib
import logging
from email.utils import formataddr
from typing import Any

from arq.worker import Function, func

from app.auth.tables import User
from app.campaigns.sending import (
    SLICE_SECONDS,
    build_test_message,
    due_campaigns,
    run_campaign,
)
from app.campaigns.service import get_campaign
from app.config import Settings
from app.email.settings import EmailSettings
from app.errors import FieldError, NotFound
from workers.mail import MAX_TRIES, deliver_or_retry

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


async def send_campaign_test(
    ctx: dict[str, Any], campaign_id: int, user_id: int, values: dict[str, str]
) -> str | None:
    """Send the campaign, rendered with ``values``, to user ``user_id``.

    The campaign page queues this with the values its preview shows. The
    message goes over SMTP or to the outbox like a real one, but no
    recipient row records it, so the campaign's figures do not count it.
    Returns where it went, or None when the campaign or the user is gone
    or the text no longer renders.
    """
    settings: Settings = ctx.get("settings") or Settings.from_env()
    campaign: dict[str, Any] = {}
    with contextlib.suppress(NotFound):
        campaign = await get_campaign(campaign_id)
    users = await User.select(User.email, User.name).where(User.id == user_id)
    if not campaign or not users:
        logger.warning(
            "campaign test not sent: campaign or user not found "
            "campaign_id=%s user_id=%s job_id=%s",
            campaign_id,
            user_id,
            ctx.get("job_id"),
        )
        return None
    to = formataddr((users[0]["name"], users[0]["email"]))
    domain = EmailSettings.from_env().domain
    try:
        message = build_test_message(campaign, values, to, settings, domain)
    except FieldError as error:
        logger.error(
            "campaign test not rendered campaign_id=%s user_id=%s error=%s",
            campaign_id,
            user_id,
            error,
        )
        return None
    where = await deliver_or_retry(ctx, message, settings)
    logger.info(
        "campaign test sent campaign_id=%s user_id=%s to=%s",
        campaign_id,
        user_id,
        where,
    )
    return where


# Results are not kept, because the arguments contain a recipient's values.
send_campaign_test_job: Function = func(
    send_campaign_test, max_tries=MAX_TRIES, keep_result=0
)
