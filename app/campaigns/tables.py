"""Campaigns, their recipients and the addresses that no campaign mails."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User
from app.contacts.tables import Contact
from app.leads.tables import Lead

AUDIENCES = ("contact", "lead")
# draft -> scheduled -> sending -> sent; draft or scheduled -> cancelled.
CAMPAIGN_STATES = ("draft", "scheduled", "sending", "sent", "cancelled")
# pending -> sending -> sent, or skipped before sending. A recipient left in
# "sending" by a worker that stopped becomes "interrupted" and is not resent.
RECIPIENT_STATES = ("pending", "sending", "sent", "skipped", "failed", "interrupted")
SUPPRESSION_REASONS = ("unsubscribed", "bounced")


class Campaign(Table):
    id: Serial
    name = Varchar(length=200)
    audience = Varchar(length=10, default="contact")
    # An app.workflows.schema.Group, stored as JSON.
    segment = JSONB(default='{"type": "group", "match": "all", "items": []}')
    subject = Varchar(length=300)
    body = Text()
    send_at = Timestamptz(null=True, default=None)
    rate_per_minute = Integer(default=60)
    # Days after a message during which a new or won deal counts as influenced.
    influence_days = Integer(default=30)
    state = Varchar(length=20, default="draft")
    # Raised by one on each change that app.campaigns.service makes. The sending
    # worker's moves to sending and sent leave it as it is.
    version = Integer(default=1)
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
    # The sending worker's lease: a random owner id and its last heartbeat.
    lease_owner = Varchar(length=64, null=True, default=None)
    heartbeat_at = Timestamptz(null=True, default=None)


class CampaignRecipient(Table):
    id: Serial
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.cascade)
    contact = ForeignKey(Contact, null=True, default=None, on_delete=OnDelete.set_null)
    lead = ForeignKey(Lead, null=True, default=None, on_delete=OnDelete.set_null)
    email = Varchar(length=254)
    name = Varchar(length=250, default="")
    # Values the template reads as {{ recipient.<key> }}.
    fields = JSONB(default="{}")
    message_id = Varchar(length=250, unique=True)
    state = Varchar(length=20, default="pending")
    # Why a recipient was skipped or failed.
    reason = Varchar(length=500, default="")
    claimed_at = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    replied_at = Timestamptz(null=True, default=None)
    bounced_at = Timestamptz(null=True, default=None)
    unsubscribed_at = Timestamptz(null=True, default=None)


class EmailSuppression(Table):
    """An address that campaigns skip: it unsubscribed or bounced."""

    id: Serial
    # Stored lower-case; unique.
    email = Varchar(length=254, unique=True)
    reason = Varchar(length=20)
    recipient = ForeignKey(
        CampaignRecipient, null=True, default=None, on_delete=OnDelete.set_null
    )
    created_at = Timestamptz(default=TimestamptzNow())
