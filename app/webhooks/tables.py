"""Webhook endpoints, the outbox of side effects and the log of webhook attempts."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Array,
    BigSerial,
    Boolean,
    DoublePrecision,
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
from app.encryption.columns import EncryptedText


class WebhookEndpoint(Table):
    """A URL that receives signed messages for the event types it subscribes to."""

    id: Serial
    url = Varchar(length=2000)
    description = Varchar(length=200, default="")
    event_types = Array(base_column=Varchar(length=60))
    # {"pipeline": id, "team": id, "field": name, "value": text}, each optional.
    filters = JSONB(default="{}")
    # The signing secret, "whsec_" and base64, encrypted at rest.
    secret = EncryptedText(length=100)
    enabled = Boolean(default=True)
    disabled_reason = Text(default="")
    # Messages in a row whose every attempt failed; a success resets it.
    consecutive_failures = Integer(default=0)
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class OutboxMessage(Table):
    """A side effect written in the transaction of the change that caused it.

    ``kind`` is ``webhook`` (a POST to ``endpoint``), ``notify`` (a toast on
    users' pages), ``mail`` or ``rescore``. ``message_id`` is the ``webhook-id`` header,
    the same on every attempt. Messages with the same ``ordering_key`` are
    delivered one after another in id order.
    """

    id = BigSerial(primary_key=True)
    kind = Varchar(length=20)
    endpoint = ForeignKey(
        WebhookEndpoint, null=True, default=None, on_delete=OnDelete.cascade
    )
    message_id = Varchar(length=60, unique=True)
    event_type = Varchar(length=60, default="")
    ordering_key = Varchar(length=120, null=True, default=None)
    # The body of a webhook (sent byte for byte on every attempt), or the
    # arguments of another kind, as JSON.
    payload = Text()
    # pending, delivered or failed (every attempt failed).
    status = Varchar(length=20, default="pending")
    attempts = Integer(default=0)
    # The attempt count at the last manual redelivery; the retry schedule
    # starts again from there.
    schedule_start = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class WebhookAttempt(Table):
    """One POST of a webhook message and how it ended."""

    id = BigSerial(primary_key=True)
    message = ForeignKey(OutboxMessage, null=False, on_delete=OnDelete.cascade)
    endpoint = ForeignKey(
        WebhookEndpoint, null=True, default=None, on_delete=OnDelete.cascade
    )
    attempt = Integer()
    status_code = Integer(null=True, default=None)
    # delivered, failed or refused (the address was not allowed).
    outcome = Varchar(length=20)
    duration_ms = DoublePrecision(default=0.0)
    response_excerpt = Text(default="")
    error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
