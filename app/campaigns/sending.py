"""Sending a campaign: one sender per campaign at a time, paced to its rate.

A sender holds the campaign's lease (``lease_owner`` with a heartbeat). It
claims one pending recipient at a time with ``FOR UPDATE SKIP LOCKED``,
marks it ``sending`` and commits, delivers the message, and marks it
``sent``. A sender that takes over from one that stopped finds that one's
claimed recipient still ``sending``: the message may or may not have been
accepted, so it is marked ``interrupted`` and not sent again. No one gets
a message twice, and at most one recipient per stopped sender gets none.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import os
import time
import uuid
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

import aiosmtplib
import msgspec

from app.campaigns.segments import parse_segment, segment_members
from app.campaigns.service import campaign_topics
from app.campaigns.tables import Campaign
from app.campaigns.templates import recipient_fields, render_message
from app.campaigns.tokens import make_token
from app.config import Settings
from app.email.settings import EmailSettings
from app.events.service import change_set
from app.mail import deliver, mark_automatic

logger = logging.getLogger(__name__)

# Seconds without a heartbeat after which another worker takes a campaign over.
STALE_SECONDS = float(os.environ.get("CAMPAIGN_STALE_SECONDS", "30"))
# Seconds one job sends for before it hands the campaign back to the
# dispatcher, which keeps every job well inside arq's job timeout.
SLICE_SECONDS = float(os.environ.get("CAMPAIGN_SLICE_SECONDS", "240"))
# Seconds between heartbeats while a sender waits for its next slot.
HEARTBEAT_SECONDS = max(0.5, min(5.0, STALE_SECONDS / 3))
# A test message: its subject prefix, the header naming its campaign, and the
# token in its footer link, which names no recipient.
TEST_PREFIX = "[Test] "
TEST_HEADER = "X-Switchboard-Campaign-Test"
TEST_TOKEN = "test"

DUE = """
SELECT id FROM campaign
WHERE (state = 'scheduled' AND send_at <= now())
   OR (state = 'sending' AND (lease_owner IS NULL
        OR heartbeat_at < now() - make_interval(secs => {})))
ORDER BY id
"""

TAKE_LEASE = """
UPDATE campaign c
SET lease_owner = {}, heartbeat_at = now(), state = 'sending',
    started_at = coalesce(c.started_at, now()), updated_at = now()
FROM (SELECT id, state AS old_state FROM campaign WHERE id = {} FOR UPDATE) old
WHERE c.id = old.id
  AND ((c.state = 'scheduled' AND c.send_at <= now()) OR c.state = 'sending')
  AND (c.lease_owner IS NULL
       OR c.heartbeat_at < now() - make_interval(secs => {}))
RETURNING c.*, old.old_state
"""

CLAIM = """
UPDATE campaign_recipient SET state = 'sending', claimed_at = now()
WHERE id = (
    SELECT id FROM campaign_recipient
    WHERE campaign = {} AND state = 'pending'
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id, email, name, fields, message_id,
    EXISTS (SELECT 1 FROM email_suppression s
            WHERE s.email = lower(campaign_recipient.email)) AS suppressed
"""


async def due_campaigns() -> list[int]:
    """Return the campaigns that are due, or whose sender stopped."""
    rows = await Campaign.raw(DUE, STALE_SECONDS)
    return [int(row["id"]) for row in rows]


async def add_recipients(campaign: dict[str, Any], domain: str) -> int:
    """Insert a recipient for each segment member; suppressed ones as skipped."""
    audience = campaign["audience"]
    group = parse_segment(campaign["segment"], audience)
    count = 0
    async for member in segment_members(audience, group):
        values = recipient_fields(audience, member)
        message_id = f"<campaign-{campaign['id']}-{uuid.uuid4().hex}@{domain}>"
        rows = await Campaign.raw(
            "INSERT INTO campaign_recipient "
            "(campaign, contact, lead, email, name, fields, message_id, state, reason) "
            "SELECT {}, {}, {}, {}, {}, {}::jsonb, {}, "
            "CASE WHEN s.id IS NULL THEN 'pending' ELSE 'skipped' END, "
            "coalesce(s.reason, '') "
            "FROM (SELECT 1) one LEFT JOIN email_suppression s ON s.email = lower({}) "
            "ON CONFLICT (campaign, email) DO NOTHING RETURNING id",
            campaign["id"],
            member["id"] if audience == "contact" else None,
            member["id"] if audience == "lead" else None,
            values["email"],
            values["name"],
            _json(values),
            message_id,
            values["email"],
        )
        count += len(rows)
    return count


def _json(values: dict[str, Any]) -> str:
    return msgspec.json.encode(values).decode()


async def take_lease(
    campaign_id: int, owner: str, domain: str
) -> dict[str, Any] | None:
    """Become the campaign's sender; None when it is not due or has a live sender.

    Starting a scheduled campaign adds its recipients in the same
    transaction, so a worker that stops meanwhile leaves it scheduled.
    """
    async with change_set() as changes:
        rows = await Campaign.raw(TAKE_LEASE, owner, campaign_id, STALE_SECONDS)
        if not rows:
            return None
        campaign = rows[0]
        if campaign["old_state"] == "scheduled":
            added = await add_recipients(campaign, domain)
            logger.info(
                "campaign started campaign_id=%s recipients=%s", campaign_id, added
            )
        else:
            interrupted = await Campaign.raw(
                "UPDATE campaign_recipient SET state = 'interrupted', "
                "reason = 'the sending worker stopped during delivery; not resent' "
                "WHERE campaign = {} AND state = 'sending' RETURNING id",
                campaign_id,
            )
            logger.warning(
                "campaign taken over campaign_id=%s interrupted_recipient_ids=%s",
                campaign_id,
                [row["id"] for row in interrupted],
            )
        changes.add(
            "campaign.sending",
            "campaign",
            campaign_id,
            campaign_topics(campaign_id),
            {"state": [campaign["old_state"], "sending"]},
        )
    return campaign


async def heartbeat(campaign_id: int, owner: str) -> bool:
    """Renew the lease; False when it was lost or the campaign was cancelled."""
    rows = await Campaign.raw(
        "UPDATE campaign SET heartbeat_at = now() "
        "WHERE id = {} AND lease_owner = {} AND state = 'sending' RETURNING id",
        campaign_id,
        owner,
    )
    return bool(rows)


async def release(campaign_id: int, owner: str) -> None:
    await Campaign.raw(
        "UPDATE campaign SET lease_owner = NULL WHERE id = {} AND lease_owner = {}",
        campaign_id,
        owner,
    )


async def claim(campaign_id: int) -> dict[str, Any] | None:
    async with Campaign._meta.db.transaction():
        rows = await Campaign.raw(CLAIM, campaign_id)
    return rows[0] if rows else None


async def settle(
    campaign_id: int, recipient_id: int, state: str, reason: str = ""
) -> None:
    """Record a recipient's outcome and push the campaign's progress."""
    async with change_set() as changes:
        await Campaign.raw(
            "UPDATE campaign_recipient SET state = {}, reason = {}, "
            "sent_at = CASE WHEN {} = 'sent' THEN now() ELSE sent_at END "
            "WHERE id = {}",
            state,
            reason[:500],
            state,
            recipient_id,
        )
        changes.add(
            "campaign.progress",
            "campaign",
            campaign_id,
            campaign_topics(campaign_id),
            {"recipient": recipient_id, "state": state},
        )


async def finish(campaign_id: int, owner: str) -> bool:
    """Mark the campaign sent once no recipient is pending; False otherwise."""
    async with change_set() as changes:
        rows = await Campaign.raw(
            "UPDATE campaign SET state = 'sent', finished_at = now(), "
            "lease_owner = NULL, updated_at = now() "
            "WHERE id = {} AND lease_owner = {} AND state = 'sending' AND NOT EXISTS "
            "(SELECT 1 FROM campaign_recipient WHERE campaign = {} "
            " AND state IN ('pending', 'sending')) RETURNING id",
            campaign_id,
            owner,
            campaign_id,
        )
        if rows:
            changes.add(
                "campaign.sent",
                "campaign",
                campaign_id,
                campaign_topics(campaign_id),
                {"state": ["sending", "sent"]},
            )
    return bool(rows)


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/unsubscribe/{token}"


def compose_message(
    campaign: dict[str, Any],
    values: dict[str, Any],
    link: str,
    to: str,
    settings: Settings,
) -> EmailMessage:
    """Render the campaign for one recipient's ``values`` into a message to ``to``."""
    subject, body = render_message(campaign, values, link)
    # Lines up to RFC 5322's limit of 998 characters: under the default of
    # 78, the unsubscribe URLs would be folded into RFC 2047 encoded words,
    # which mail clients do not read as List-Unsubscribe.
    message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def add_unsubscribe_headers(
    message: EmailMessage, settings: Settings, token: str
) -> None:
    """Add List-Unsubscribe (RFC 2369) and, for an https link, RFC 8058's
    one-click List-Unsubscribe-Post."""
    link = unsubscribe_url(settings, token)
    sender = parseaddr(settings.mail_from)[1]
    mailto = f"mailto:{sender}?subject={quote('unsubscribe ' + token)}"
    message["List-Unsubscribe"] = f"<{link}>, <{mailto}>"
    # RFC 8058 section 3.1 requires an HTTPS URI for one-click unsubscribing,
    # so with an http PUBLIC_URL the links stay, without the one-click claim.
    if urlsplit(link).scheme == "https":
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def build_campaign_message(
    campaign: dict[str, Any],
    recipient: dict[str, Any],
    settings: Settings,
    domain: str,
) -> EmailMessage:
    """Render one recipient's message with its unsubscribe headers, marked
    as automatic mail of ``domain`` (EMAIL_DOMAIN)."""
    token = make_token(settings.secret_key, recipient["id"])
    values = recipient["fields"]
    if isinstance(values, str):
        values = msgspec.json.decode(values)
    message = compose_message(
        campaign,
        values,
        unsubscribe_url(settings, token),
        formataddr((recipient["name"], recipient["email"])),
        settings,
    )
    message["Message-ID"] = recipient["message_id"]
    add_unsubscribe_headers(message, settings, token)
    mark_automatic(message, domain)
    return message


def build_test_message(
    campaign: dict[str, Any],
    values: dict[str, Any],
    to: str,
    settings: Settings,
    domain: str,
) -> EmailMessage:
    """Render a test of the campaign for ``to``, marked in its subject and
    in TEST_HEADER.

    A test has no recipient row to unsubscribe, so it carries no
    List-Unsubscribe headers, and its footer link leads to the unsubscribe
    "not found" page.
    """
    message = compose_message(
        campaign, values, unsubscribe_url(settings, TEST_TOKEN), to, settings
    )
    message.replace_header("Subject", f"{TEST_PREFIX}{message['Subject']}")
    message[TEST_HEADER] = str(campaign["id"])
    mark_automatic(message, domain)
    return message


class Pacer:
    """Send times ``interval`` seconds apart, with no burst after a delay."""

    def __init__(self, interval: float, first_at: float) -> None:
        self.interval = interval
        self.next_at = first_at

    def wait_seconds(self) -> float:
        return max(0.0, self.next_at - time.monotonic())

    def sent(self, started_at: float) -> None:
        """Count a send that started at ``started_at`` (monotonic seconds).

        The next one starts an interval after this one started, so the time
        a delivery takes does not slow the rate. A send that started late
        pushes the next one back instead of letting two go at once.
        """
        self.next_at = started_at + self.interval


async def first_slot(campaign_id: int, interval: float) -> float:
    """Return the monotonic time of the first send, one interval after the last."""
    rows = await Campaign.raw(
        "SELECT extract(epoch FROM now() - max(sent_at)) AS since "
        "FROM campaign_recipient WHERE campaign = {}",
        campaign_id,
    )
    since = rows[0]["since"]
    if since is None:
        return time.monotonic()
    return time.monotonic() + max(0.0, interval - float(since))


async def wait_for_slot(pacer: Pacer, campaign_id: int, owner: str) -> bool:
    """Sleep until the next send, renewing the lease; False if it was lost."""
    while (delay := pacer.wait_seconds()) > 0:
        await asyncio.sleep(min(delay, HEARTBEAT_SECONDS))
        if not await heartbeat(campaign_id, owner):
            return False
    return await heartbeat(campaign_id, owner)


async def run_campaign(campaign_id: int, settings: Settings) -> str:
    """Send a due campaign's pending messages for up to ``SLICE_SECONDS``.

    Returns ``busy`` when another sender has the campaign or it is not due,
    ``sent`` when it finished, and ``stopped`` when the lease was lost or the
    campaign cancelled. ``paused`` means the slice ended or SMTP failed, and
    the dispatcher resumes the campaign.
    """
    owner = uuid.uuid4().hex
    domain = EmailSettings.from_env().domain
    campaign = await take_lease(campaign_id, owner, domain)
    if campaign is None:
        return "busy"
    interval = 60.0 / int(campaign["rate_per_minute"])
    pacer = Pacer(interval, await first_slot(campaign_id, interval))
    ends_at = time.monotonic() + SLICE_SECONDS
    sent = 0
    try:
        while time.monotonic() < ends_at:
            if not await wait_for_slot(pacer, campaign_id, owner):
                logger.info("campaign sender stopped campaign_id=%s", campaign_id)
                return "stopped"
            recipient = await claim(campaign_id)
            if recipient is None:
                if await finish(campaign_id, owner):
                    logger.info(
                        "campaign sent campaign_id=%s sent_by_this_job=%s",
                        campaign_id,
                        sent,
                    )
                    return "sent"
                return "stopped"
            if recipient["suppressed"]:
                await settle(campaign_id, recipient["id"], "skipped", "suppressed")
                continue
            started_at = time.monotonic()
            outcome = await send_one(campaign, recipient, settings, domain)
            if outcome == "retry":
                return "paused"
            # A rejected message used the server as much as a delivered one.
            pacer.sent(started_at)
            if outcome == "sent":
                sent += 1
        return "paused"
    finally:
        await release(campaign_id, owner)


async def send_one(
    campaign: dict[str, Any],
    recipient: dict[str, Any],
    settings: Settings,
    domain: str,
) -> str:
    """Deliver one claimed recipient's message; returns sent, failed or retry."""
    campaign_id = int(campaign["id"])
    try:
        message = build_campaign_message(campaign, recipient, settings, domain)
    except ValueError as error:
        logger.error(
            "campaign message not rendered campaign_id=%s recipient_id=%s error=%s",
            campaign_id,
            recipient["id"],
            error,
        )
        await settle(campaign_id, recipient["id"], "failed", str(error))
        return "failed"
    try:
        await deliver(message, settings)
    except (
        aiosmtplib.SMTPRecipientsRefused,
        aiosmtplib.SMTPResponseException,
    ) as error:
        code = getattr(error, "code", None)
        permanent = isinstance(error, aiosmtplib.SMTPRecipientsRefused) or (
            isinstance(code, int) and code >= 500
        )
        if not permanent:
            return await retry_later(campaign_id, recipient["id"], error)
        logger.warning(
            "campaign message rejected campaign_id=%s recipient_id=%s error=%s",
            campaign_id,
            recipient["id"],
            error,
        )
        await settle(campaign_id, recipient["id"], "failed", str(error))
        return "failed"
    except (aiosmtplib.SMTPException, OSError) as error:
        return await retry_later(campaign_id, recipient["id"], error)
    await settle(campaign_id, recipient["id"], "sent")
    return "sent"


async def retry_later(campaign_id: int, recipient_id: int, error: Exception) -> str:
    """Put a recipient back in the queue after a temporary SMTP failure.

    NOTE: a connection lost after the server accepted the message also lands
    here, and that recipient is sent the message again.
    """
    logger.warning(
        "campaign message not sent, will retry campaign_id=%s recipient_id=%s error=%s",
        campaign_id,
        recipient_id,
        error,
    )
    await Campaign.raw(
        "UPDATE campaign_recipient SET state = 'pending', claimed_at = NULL "
        "WHERE id = {} AND state = 'sending'",
        recipient_id,
    )
    return "retry"
