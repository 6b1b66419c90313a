"""Campaign rules: saving, scheduling, cancelling, statistics and the replies,
bounces and unsubscribes recorded against recipients.

Sending is in ``app.campaigns.sending``; the worker's jobs are in
``workers.campaigns``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from app import fields
from app.audit.service import snapshot
from app.campaigns.segments import encode_segment, parse_segment
from app.campaigns.tables import AUDIENCES, Campaign
from app.campaigns.templates import check_templates
from app.errors import FieldError, NotFound, VersionMismatch
from app.events.service import change_set
from app.pagination import Page, PageRequest

logger = logging.getLogger(__name__)

# How long ago a send time may be and still mean now.
SEND_AT_GRACE = dt.timedelta(minutes=5)

MAX_NAME = 200
MAX_SUBJECT = 300
MAX_BODY = 50_000
MAX_RATE = 6000
MAX_INFLUENCE_DAYS = 365
DEFAULT_RATE = 60
DEFAULT_INFLUENCE_DAYS = 30
EDITABLE_STATES = ("draft", "scheduled")
ReplyKind = Literal["reply", "bounce", "unsubscribe"]
REPLY_KINDS: tuple[str, ...] = ("reply", "bounce", "unsubscribe")
MESSAGE_ID = re.compile(r"<?(?P<id>[^<>\s]+@[^<>\s]+)>?")


class CampaignStateError(FieldError):
    """A change that the campaign's current state does not allow.

    Pages show it like any FieldError, and the API returns 409 Conflict.
    """


def campaign_topics(campaign_id: int) -> list[str]:
    return [f"campaign:{campaign_id}", "campaigns"]


@dataclass(frozen=True)
class CampaignInput:
    """A campaign as submitted: text from a form, or the segment as data."""

    name: str | None = None
    audience: str | None = "contact"
    segment: Any = None
    subject: str | None = None
    body: str | None = None
    rate_per_minute: str | int | None = None
    influence_days: str | int | None = None


def whole_number(name: str, raw: str | int | None, default: int, maximum: int) -> int:
    if raw is None or str(raw).strip() == "":
        return default
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise FieldError(name, raw, f"must be a whole number from 1 to {maximum}")
    number = int(text)
    if not 1 <= number <= maximum:
        raise FieldError(name, raw, f"must be a whole number from 1 to {maximum}")
    return number


def check_input(data: CampaignInput) -> dict[str, Any]:
    """Return the campaign's column values; raises FieldError naming the field."""
    name = fields.text("name", data.name, required=True, max_length=MAX_NAME)
    audience = fields.choice("audience", data.audience or "contact", AUDIENCES)
    segment = parse_segment(
        data.segment
        if data.segment is not None
        else {"type": "group", "match": "all", "items": []},
        audience,
    )
    subject = fields.text(
        "subject", data.subject, required=True, max_length=MAX_SUBJECT
    )
    body = fields.text("body", data.body, required=True, max_length=MAX_BODY)
    check_templates(subject, body)
    return {
        "name": name,
        "audience": audience,
        "segment": encode_segment(segment),
        "subject": subject,
        "body": body,
        "rate_per_minute": whole_number(
            "rate_per_minute", data.rate_per_minute, DEFAULT_RATE, MAX_RATE
        ),
        "influence_days": whole_number(
            "influence_days",
            data.influence_days,
            DEFAULT_INFLUENCE_DAYS,
            MAX_INFLUENCE_DAYS,
        ),
    }


async def create_campaign(data: CampaignInput, actor_id: int | None) -> int:
    """Save a new draft campaign and return its id."""
    values = check_input(data)
    async with change_set(actor_id) as changes:
        rows = await Campaign.raw(
            "INSERT INTO campaign (name, audience, segment, subject, body, "
            "rate_per_minute, influence_days, created_by) "
            "VALUES ({}, {}, {}::jsonb, {}, {}, {}, {}, {}) RETURNING id",
            values["name"],
            values["audience"],
            values["segment"],
            values["subject"],
            values["body"],
            values["rate_per_minute"],
            values["influence_days"],
            actor_id,
        )
        campaign_id = int(rows[0]["id"])
        changes.add(
            "campaign.created", "campaign", campaign_id, campaign_topics(campaign_id)
        )
    logger.info("campaign created campaign_id=%s user_id=%s", campaign_id, actor_id)
    return campaign_id


async def update_campaign(
    campaign_id: int,
    data: CampaignInput,
    actor_id: int | None,
    expected_version: int | None = None,
) -> None:
    """Change a campaign that has not started sending.

    Raises VersionMismatch when ``expected_version`` is given and the
    campaign is at another version, and CampaignStateError once it is
    sending, sent or cancelled.
    """
    values = check_input(data)
    async with change_set(actor_id) as changes:
        current = await lock_campaign(campaign_id)
        if expected_version is not None and current["version"] != expected_version:
            raise VersionMismatch(
                "campaign", campaign_id, expected_version, current["version"]
            )
        if current["state"] not in EDITABLE_STATES:
            raise CampaignStateError(
                "state", current["state"], "cannot be edited once sending started"
            )
        await Campaign.raw(
            "UPDATE campaign SET name = {}, audience = {}, segment = {}::jsonb, "
            "subject = {}, body = {}, rate_per_minute = {}, influence_days = {}, "
            "version = version + 1, updated_at = now() WHERE id = {}",
            values["name"],
            values["audience"],
            values["segment"],
            values["subject"],
            values["body"],
            values["rate_per_minute"],
            values["influence_days"],
            campaign_id,
        )
        changes.add(
            "campaign.updated", "campaign", campaign_id, campaign_topics(campaign_id)
        )
    logger.info("campaign updated campaign_id=%s user_id=%s", campaign_id, actor_id)


def parse_send_at(raw: str | None, now: dt.datetime) -> dt.datetime:
    """Read a send time in ISO 8601, taken as UTC without an offset.

    Empty text means now, and so does a time at most SEND_AT_GRACE ago (a
    form's minutes have passed while it was filled in). An earlier time
    raises FieldError.
    """
    text = (raw or "").strip()
    if not text:
        return now
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(
            "send_at", raw, "is not a date and time such as 2026-12-24T09:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if parsed.year > fields.LAST_YEAR:
        raise FieldError("send_at", raw, f"is after {fields.LAST_YEAR}")
    if parsed < now - SEND_AT_GRACE:
        raise FieldError("send_at", raw, "is in the past; leave it empty to send now")
    return max(parsed, now)


async def lock_campaign(campaign_id: int) -> dict[str, Any]:
    rows = await Campaign.raw(
        "SELECT id, state, version FROM campaign WHERE id = {} FOR UPDATE",
        campaign_id,
    )
    if not rows:
        raise NotFound("campaign", campaign_id)
    return rows[0]


async def schedule_campaign(
    campaign_id: int,
    send_at_raw: str | None,
    actor_id: int | None,
    now: dt.datetime | None = None,
) -> dt.datetime:
    """Schedule a draft or scheduled campaign and return its send time.

    The worker's dispatcher starts it once the time has come.
    """
    send_at = parse_send_at(send_at_raw, now or dt.datetime.now(dt.UTC))
    async with change_set(actor_id) as changes:
        current = await lock_campaign(campaign_id)
        if current["state"] not in EDITABLE_STATES:
            raise CampaignStateError(
                "state", current["state"], "cannot be scheduled once sending started"
            )
        await Campaign.raw(
            "UPDATE campaign SET state = 'scheduled', send_at = {}, "
            "version = version + 1, updated_at = now() WHERE id = {}",
            send_at,
            campaign_id,
        )
        changes.add(
            "campaign.scheduled",
            "campaign",
            campaign_id,
            campaign_topics(campaign_id),
            {"state": [current["state"], "scheduled"]},
        )
    logger.info(
        "campaign scheduled campaign_id=%s send_at=%s user_id=%s",
        campaign_id,
        send_at.isoformat(),
        actor_id,
    )
    return send_at


async def cancel_campaign(campaign_id: int, actor_id: int | None) -> None:
    """Stop a campaign: a running sender stops before its next message."""
    async with change_set(actor_id) as changes:
        current = await lock_campaign(campaign_id)
        if current["state"] in ("sent", "cancelled"):
            raise CampaignStateError("state", current["state"], "cannot be cancelled")
        await Campaign.raw(
            "UPDATE campaign SET state = 'cancelled', finished_at = now(), "
            "version = version + 1, updated_at = now() WHERE id = {}",
            campaign_id,
        )
        await Campaign.raw(
            "UPDATE campaign_recipient SET state = 'skipped', "
            "reason = 'campaign cancelled' WHERE campaign = {} AND state = 'pending'",
            campaign_id,
        )
        changes.add(
            "campaign.cancelled",
            "campaign",
            campaign_id,
            campaign_topics(campaign_id),
            {"state": [current["state"], "cancelled"]},
        )
    logger.info("campaign cancelled campaign_id=%s user_id=%s", campaign_id, actor_id)


async def delete_campaign(
    campaign_id: int, actor_id: int | None, expected_version: int | None = None
) -> None:
    """Delete a draft campaign.

    Raises VersionMismatch when ``expected_version`` is given and the
    campaign is at another version, and CampaignStateError for any state but
    draft.
    """
    async with change_set(actor_id) as changes:
        current = await lock_campaign(campaign_id)
        if expected_version is not None and current["version"] != expected_version:
            raise VersionMismatch(
                "campaign", campaign_id, expected_version, current["version"]
            )
        if current["state"] != "draft":
            raise CampaignStateError(
                "state", current["state"], "cannot be deleted, only a draft can"
            )
        deleted = await Campaign.raw(
            "DELETE FROM campaign WHERE id = {} RETURNING name, audience, "
            "segment, subject, body, rate_per_minute, influence_days",
            campaign_id,
        )
        changes.add(
            "campaign.deleted",
            "campaign",
            campaign_id,
            campaign_topics(campaign_id),
            snapshot(deleted[0], "delete"),
        )
    logger.info("campaign deleted campaign_id=%s user_id=%s", campaign_id, actor_id)


async def get_campaign(campaign_id: int) -> dict[str, Any]:
    rows = await Campaign.raw(
        "SELECT c.*, u.name AS created_by_name FROM campaign c "
        "LEFT JOIN app_user u ON u.id = c.created_by WHERE c.id = {}",
        campaign_id,
    )
    if not rows:
        raise NotFound("campaign", campaign_id)
    return rows[0]


STATS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'sending') AS in_flight,
       count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE state = 'skipped') AS skipped,
       count(*) FILTER (WHERE state IN ('failed', 'interrupted')) AS failed,
       count(*) FILTER (WHERE bounced_at IS NOT NULL) AS bounced,
       count(*) FILTER (WHERE replied_at IS NOT NULL) AS replied,
       count(*) FILTER (WHERE unsubscribed_at IS NOT NULL) AS unsubscribed
FROM campaign_recipient WHERE campaign = {}
"""


async def campaign_stats(campaign_id: int) -> dict[str, int]:
    """Count the campaign's recipients by outcome; ``done`` counts those settled."""
    rows = await Campaign.raw(STATS, campaign_id)
    stats = {name: int(value or 0) for name, value in rows[0].items()}
    stats["done"] = stats["total"] - stats["pending"] - stats["in_flight"]
    return stats


async def list_campaigns(paging: PageRequest) -> Page[dict[str, Any]]:
    rows = await Campaign.raw(
        "SELECT c.id, c.name, c.audience, c.state, c.send_at, c.created_at, "
        "(SELECT count(*) FROM campaign_recipient r WHERE r.campaign = c.id "
        " AND r.sent_at IS NOT NULL) AS sent, count(*) OVER () AS total "
        "FROM campaign c ORDER BY c.created_at DESC, c.id DESC LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    total = int(rows[0]["total"]) if rows else 0
    if not rows and paging.offset:
        count = await Campaign.raw("SELECT count(*) AS total FROM campaign")
        total = int(count[0]["total"])
    return Page(rows=rows, total=total, paging=paging)


async def list_recipients(
    campaign_id: int, paging: PageRequest
) -> Page[dict[str, Any]]:
    rows = await Campaign.raw(
        "SELECT id, email, name, state, reason, contact, lead, sent_at, "
        "replied_at, bounced_at, unsubscribed_at, count(*) OVER () AS total "
        "FROM campaign_recipient WHERE campaign = {} ORDER BY id LIMIT {} OFFSET {}",
        campaign_id,
        paging.size,
        paging.offset,
    )
    total = int(rows[0]["total"]) if rows else 0
    if not rows and paging.offset:
        total = (await campaign_stats(campaign_id))["total"]
    return Page(rows=rows, total=total, paging=paging)


# Deals of recipients' contacts created, or won, within the campaign's
# influence window after the message was sent.
INFLUENCED_DEALS = """
SELECT d.id, d.name, d.created_at, s.kind AS stage_kind, s.name AS stage_name,
       r.email, r.sent_at,
       (d.created_at >= r.sent_at) AS created_after,
       (s.kind = 'won' AND d.stage_entered_at >= r.sent_at) AS won_after,
       count(*) OVER () AS total
FROM campaign_recipient r
JOIN campaign c ON c.id = r.campaign
JOIN deal d ON d.contact = r.contact
JOIN stage s ON s.id = d.stage
WHERE r.campaign = {} AND r.sent_at IS NOT NULL AND (
    d.created_at BETWEEN r.sent_at
        AND r.sent_at + make_interval(days => c.influence_days)
    OR (s.kind = 'won' AND d.stage_entered_at
        BETWEEN r.sent_at AND r.sent_at + make_interval(days => c.influence_days))
)
ORDER BY d.created_at DESC, d.id DESC
LIMIT {} OFFSET {}
"""

INFLUENCE_TOTALS = """
SELECT count(DISTINCT d.id) FILTER (
           WHERE d.created_at BETWEEN r.sent_at
                 AND r.sent_at + make_interval(days => c.influence_days)) AS created,
       count(DISTINCT d.id) FILTER (
           WHERE s.kind = 'won' AND d.stage_entered_at BETWEEN r.sent_at
                 AND r.sent_at + make_interval(days => c.influence_days)) AS won
FROM campaign_recipient r
JOIN campaign c ON c.id = r.campaign
JOIN deal d ON d.contact = r.contact
JOIN stage s ON s.id = d.stage
WHERE r.campaign = {} AND r.sent_at IS NOT NULL
"""

# Leads mailed directly, or whose converted contact was mailed, that were
# converted within the window.
CONVERTED_LEADS = """
SELECT *, count(*) OVER () AS total FROM (
    SELECT DISTINCT ON (l.id) l.id, l.name, l.converted_at, r.email
    FROM campaign_recipient r
    JOIN campaign c ON c.id = r.campaign
    JOIN lead l ON (l.id = r.lead OR l.converted_contact = r.contact)
    WHERE r.campaign = {} AND r.sent_at IS NOT NULL AND l.status = 'converted'
      AND l.converted_at BETWEEN r.sent_at
          AND r.sent_at + make_interval(days => c.influence_days)
    ORDER BY l.id DESC, r.sent_at
) converted
ORDER BY id DESC
LIMIT {} OFFSET {}
"""


async def influence_totals(campaign_id: int) -> dict[str, int]:
    rows = await Campaign.raw(INFLUENCE_TOTALS, campaign_id)
    converted = await Campaign.raw(
        "SELECT count(DISTINCT l.id) AS converted FROM campaign_recipient r "
        "JOIN campaign c ON c.id = r.campaign "
        "JOIN lead l ON (l.id = r.lead OR l.converted_contact = r.contact) "
        "WHERE r.campaign = {} AND r.sent_at IS NOT NULL "
        "AND l.status = 'converted' AND l.converted_at BETWEEN r.sent_at "
        "AND r.sent_at + make_interval(days => c.influence_days)",
        campaign_id,
    )
    return {
        "deals_created": int(rows[0]["created"] or 0),
        "deals_won": int(rows[0]["won"] or 0),
        "leads_converted": int(converted[0]["converted"] or 0),
    }


async def influenced_deals(
    campaign_id: int, paging: PageRequest
) -> Page[dict[str, Any]]:
    rows = await Campaign.raw(INFLUENCED_DEALS, campaign_id, paging.size, paging.offset)
    total = int(rows[0]["total"]) if rows else 0
    return Page(rows=rows, total=total, paging=paging)


async def converted_leads(
    campaign_id: int, paging: PageRequest
) -> Page[dict[str, Any]]:
    rows = await Campaign.raw(CONVERTED_LEADS, campaign_id, paging.size, paging.offset)
    total = int(rows[0]["total"]) if rows else 0
    return Page(rows=rows, total=total, paging=paging)


async def suppress(email: str, reason: str, recipient_id: int | None) -> None:
    """Add ``email`` to the addresses campaigns skip (inside a transaction)."""
    await Campaign.raw(
        "INSERT INTO email_suppression (email, reason, recipient) "
        "VALUES (lower({}), {}, {}) ON CONFLICT (email) DO NOTHING",
        email.strip(),
        reason,
        recipient_id,
    )


async def unsubscribe_recipient(recipient_id: int) -> dict[str, Any]:
    """Unsubscribe a recipient's address from every campaign.

    Calling it again for the same recipient changes nothing more.
    """
    async with change_set() as changes:
        rows = await Campaign.raw(
            "UPDATE campaign_recipient SET unsubscribed_at = "
            "coalesce(unsubscribed_at, now()) WHERE id = {} "
            "RETURNING id, campaign, email",
            recipient_id,
        )
        if not rows:
            raise NotFound("campaign recipient", recipient_id)
        recipient = rows[0]
        await suppress(recipient["email"], "unsubscribed", recipient_id)
        # Pending messages of other campaigns to the address are skipped now,
        # and the sender checks the suppression list again before each send.
        await Campaign.raw(
            "UPDATE campaign_recipient SET state = 'skipped', reason = 'unsubscribed' "
            "WHERE lower(email) = lower({}) AND state = 'pending'",
            recipient["email"],
        )
        changes.add(
            "campaign.unsubscribed",
            "campaign",
            recipient["campaign"],
            campaign_topics(recipient["campaign"]),
            {"recipient": recipient_id},
        )
    logger.info(
        "campaign recipient unsubscribed recipient_id=%s campaign_id=%s",
        recipient_id,
        recipient["campaign"],
    )
    return recipient


async def get_recipient(recipient_id: int) -> dict[str, Any]:
    rows = await Campaign.raw(
        "SELECT r.id, r.email, r.campaign, r.unsubscribed_at, c.name AS campaign_name "
        "FROM campaign_recipient r JOIN campaign c ON c.id = r.campaign "
        "WHERE r.id = {}",
        recipient_id,
    )
    if not rows:
        raise NotFound("campaign recipient", recipient_id)
    return rows[0]


async def find_recipient(reference: str) -> int | None:
    """Return the recipient a Message-ID or an unsubscribe token refers to."""
    from app.campaigns.tokens import read_token
    from app.config import Settings

    text = reference.strip()
    # The subject of a mail to the mailto unsubscribe address.
    if text.casefold().startswith("unsubscribe "):
        text = text[len("unsubscribe ") :].strip()
    match = MESSAGE_ID.fullmatch(text)
    if match is not None:
        rows = await Campaign.raw(
            "SELECT id FROM campaign_recipient WHERE message_id = {}",
            f"<{match['id']}>",
        )
        return int(rows[0]["id"]) if rows else None
    return read_token(Settings.from_env().secret_key, text)


async def record_campaign_reply(reference: str, kind: ReplyKind) -> int | None:
    """Record a reply, bounce or unsubscribe request for one campaign recipient.

    ``reference`` is the Message-ID the campaign sent, with or without angle
    brackets. Inbound mail finds it in a reply's In-Reply-To or References
    header, or in the original message inside a bounce report. It may also
    be the recipient's unsubscribe token, or the whole subject of a mail to
    the mailto unsubscribe address ("unsubscribe <token>"). Returns the
    recipient id, or None when the reference matches no recipient. A bounce
    or an unsubscribe also adds the address to the suppression list. Raises
    FieldError for an unknown ``kind``.
    """
    if kind not in REPLY_KINDS:
        raise FieldError("kind", kind, f"must be one of {', '.join(REPLY_KINDS)}")
    recipient_id = await find_recipient(reference)
    if recipient_id is None:
        logger.info(
            "campaign %s matches no recipient reference=%s", kind, reference[:120]
        )
        return None
    if kind == "unsubscribe":
        await unsubscribe_recipient(recipient_id)
        return recipient_id
    column = "replied_at" if kind == "reply" else "bounced_at"
    async with change_set() as changes:
        rows = await Campaign.raw(
            f"UPDATE campaign_recipient SET {column} = coalesce({column}, now()) "
            "WHERE id = {} RETURNING id, campaign, email",
            recipient_id,
        )
        recipient = rows[0]
        if kind == "bounce":
            await suppress(recipient["email"], "bounced", recipient_id)
        changes.add(
            f"campaign.{kind}",
            "campaign",
            recipient["campaign"],
            campaign_topics(recipient["campaign"]),
            {"recipient": recipient_id},
        )
    logger.info(
        "campaign %s recorded recipient_id=%s campaign_id=%s",
        kind,
        recipient_id,
        recipient["campaign"],
    )
    return recipient_id
