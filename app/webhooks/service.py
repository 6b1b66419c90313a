"""Managing webhook endpoints: subscribe, edit, switch, rotate, redeliver.

Every change goes through ``change_set`` so it is audited. The signing
secret is returned once, when it is made, and stored only encrypted; no
event or audit row contains it.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app import fields
from app.encryption.columns import encrypt_value
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.merge import REDACTED
from app.pagination import Page, PageRequest
from app.webhooks.addresses import check_target
from app.webhooks.outbox import EVENT_TYPES
from app.webhooks.tables import OutboxMessage, WebhookAttempt, WebhookEndpoint

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
MAX_DESCRIPTION = 200
MAX_FILTER_VALUE = 200
FIELD_NAME = re.compile(r"[a-z_]{1,40}")
ENDPOINT_COLUMNS = (
    "id, url, description, event_types, filters::text AS filters, enabled, "
    "disabled_reason, consecutive_failures, created_at, updated_at"
)


@dataclass(frozen=True)
class EndpointInput:
    url: str
    description: str = ""
    event_types: tuple[str, ...] = ()
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IssuedEndpoint:
    """A saved endpoint and its new secret, shown to the admin this once."""

    id: int
    secret: str


def generate_secret() -> str:
    """Return a new signing secret: ``whsec_`` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def readable_fields() -> set[str]:
    from app.workflows.records import RECORD_TYPES

    return {name for kind in RECORD_TYPES.values() for name in kind.readable}


def parse_id(name: str, raw: Any) -> int | None:
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise FieldError(name, raw, "is not a valid id")
    return int(text)


def check_input(values: EndpointInput) -> EndpointInput:
    """Return ``values`` tidied; raises FieldError naming the field at fault."""
    description = fields.text(
        "description", values.description, max_length=MAX_DESCRIPTION
    )
    if not values.event_types:
        raise FieldError("event_types", None, "must include at least one event type")
    for event_type in values.event_types:
        if event_type not in EVENT_TYPES:
            raise FieldError(
                "event_types",
                event_type,
                f"is not an event type; use one of {', '.join(EVENT_TYPES)}",
            )
    filters: dict[str, Any] = {}
    for name in ("pipeline", "team"):
        number = parse_id(f"filters.{name}", values.filters.get(name))
        if number is not None:
            filters[name] = number
    field_name = str(values.filters.get("field") or "").strip()
    field_value = fields.text(
        "filters.value",
        str(values.filters.get("value") or ""),
        max_length=MAX_FILTER_VALUE,
    )
    if field_name:
        if not FIELD_NAME.fullmatch(field_name) or field_name not in readable_fields():
            raise FieldError(
                "filters.field", field_name, "is not a field of any record type"
            )
        filters["field"] = field_name
        filters["value"] = field_value
    elif field_value:
        raise FieldError("filters.field", None, "is required when a value is given")
    return EndpointInput(
        url=values.url.strip(),
        description=description,
        event_types=tuple(sorted(set(values.event_types))),
        filters=filters,
    )


def stored_values(values: EndpointInput) -> dict[str, Any]:
    return {
        "url": values.url,
        "description": values.description,
        "event_types": list(values.event_types),
        "filters": values.filters,
    }


async def create_endpoint(
    values: EndpointInput, actor_id: int | None, allow_private: bool | None = None
) -> IssuedEndpoint:
    """Subscribe an endpoint; raises FieldError for an invalid or internal URL.

    ``allow_private`` overrides CRM_WEBHOOKS_ALLOW_PRIVATE for this check.
    """
    values = check_input(values)
    await check_target("url", values.url, allow_private)
    secret = generate_secret()
    async with change_set(actor_id) as changes:
        rows = await WebhookEndpoint.raw(
            "INSERT INTO webhook_endpoint (url, description, event_types, filters, "
            "secret, created_by) VALUES ({}, {}, {}, {}::jsonb, {}, {}) RETURNING id",
            values.url,
            values.description,
            list(values.event_types),
            msgspec.json.encode(values.filters).decode(),
            encrypt_value(WebhookEndpoint, "secret", secret),
            actor_id,
        )
        endpoint_id = int(rows[0]["id"])
        changes.add(
            "webhook_endpoint.created",
            "webhook_endpoint",
            endpoint_id,
            [],
            {key: [None, value] for key, value in stored_values(values).items()},
        )
    logger.info(
        "webhook endpoint created endpoint_id=%s url=%s actor_id=%s",
        endpoint_id,
        values.url,
        actor_id,
    )
    return IssuedEndpoint(endpoint_id, secret)


async def update_endpoint(
    endpoint_id: int,
    values: EndpointInput,
    actor_id: int | None,
    allow_private: bool | None = None,
) -> None:
    values = check_input(values)
    await check_target("url", values.url, allow_private)
    async with change_set(actor_id) as changes:
        before = await locked_endpoint(endpoint_id)
        after = stored_values(values)
        await WebhookEndpoint.raw(
            "UPDATE webhook_endpoint SET url = {}, description = {}, "
            "event_types = {}, filters = {}::jsonb, updated_at = now() WHERE id = {}",
            values.url,
            values.description,
            list(values.event_types),
            msgspec.json.encode(values.filters).decode(),
            endpoint_id,
        )
        changed = {
            key: [before[key], value]
            for key, value in after.items()
            if before[key] != value
        }
        changes.add(
            "webhook_endpoint.updated", "webhook_endpoint", endpoint_id, [], changed
        )


async def locked_endpoint(endpoint_id: int) -> dict[str, Any]:
    rows = await WebhookEndpoint.raw(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = {{}} FOR UPDATE",
        endpoint_id,
    )
    if not rows:
        raise NotFound("webhook endpoint", endpoint_id)
    return decoded(rows[0])


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["filters"] = msgspec.json.decode(row["filters"] or "{}")
    row["event_types"] = list(row["event_types"])
    return row


async def set_endpoint_enabled(
    endpoint_id: int, enabled: bool, actor_id: int | None
) -> None:
    """Switch an endpoint on or off. Switching on clears the failure count,
    and its pending messages are sent again from where they stopped."""
    async with change_set(actor_id) as changes:
        before = await locked_endpoint(endpoint_id)
        if before["enabled"] == enabled:
            return
        await WebhookEndpoint.raw(
            "UPDATE webhook_endpoint SET enabled = {}, disabled_reason = {}, "
            "consecutive_failures = 0, updated_at = now() WHERE id = {}",
            enabled,
            "" if enabled else "Disabled by an administrator.",
            endpoint_id,
        )
        changes.add(
            "webhook_endpoint.updated",
            "webhook_endpoint",
            endpoint_id,
            [],
            {"enabled": [before["enabled"], enabled]},
        )
        if enabled:
            # The messages held back while it was off are due now.
            await OutboxMessage.raw(
                "UPDATE outbox_message SET next_attempt_at = now() "
                "WHERE endpoint = {} AND status = 'pending'",
                endpoint_id,
            )


async def rotate_secret(endpoint_id: int, actor_id: int | None) -> str:
    """Replace the endpoint's secret and return the new one, shown once.

    Attempts after the commit are signed with the new secret only.
    """
    secret = generate_secret()
    async with change_set(actor_id) as changes:
        await locked_endpoint(endpoint_id)
        await WebhookEndpoint.raw(
            "UPDATE webhook_endpoint SET secret = {}, updated_at = now() WHERE id = {}",
            encrypt_value(WebhookEndpoint, "secret", secret),
            endpoint_id,
        )
        changes.add(
            "webhook_endpoint.secret_rotated",
            "webhook_endpoint",
            endpoint_id,
            [],
            # That the secret changed, never the secret.
            {"secret": [REDACTED, REDACTED]},
        )
    logger.info(
        "webhook secret rotated endpoint_id=%s actor_id=%s", endpoint_id, actor_id
    )
    return secret


async def redeliver(endpoint_id: int, message_id: int, actor_id: int | None) -> None:
    """Send a message of the endpoint again, with its retry schedule restarted.

    The message keeps its ``webhook-id``, so receivers can tell it is a
    repeat. It goes out after any earlier pending message of its record.
    """
    async with change_set(actor_id) as changes:
        rows = await OutboxMessage.raw(
            "UPDATE outbox_message SET status = 'pending', next_attempt_at = now(), "
            "schedule_start = attempts, finished_at = NULL "
            "WHERE id = {} AND endpoint = {} RETURNING message_id",
            message_id,
            endpoint_id,
        )
        if not rows:
            raise NotFound("webhook message", message_id)
        changes.add(
            "webhook_message.redelivered",
            "webhook_endpoint",
            endpoint_id,
            [],
            {"message_id": [None, rows[0]["message_id"]]},
        )
        # Redelivery has no event of its own in the outbox, so queue the
        # delivery job here.
        from app.webhooks.jobs import kick_delivery

        changes.after_commit.append(lambda: kick_delivery(1, message_id))
    logger.info(
        "webhook message redelivery requested endpoint_id=%s id=%s actor_id=%s",
        endpoint_id,
        message_id,
        actor_id,
    )


async def get_endpoint(endpoint_id: int) -> dict[str, Any]:
    rows = await WebhookEndpoint.raw(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = {{}}",
        endpoint_id,
    )
    if not rows:
        raise NotFound("webhook endpoint", endpoint_id)
    return decoded(rows[0])


async def list_endpoints(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await WebhookEndpoint.count()
    rows = await WebhookEndpoint.raw(
        f"SELECT {ENDPOINT_COLUMNS}, "
        "(SELECT count(*) FROM outbox_message m WHERE m.endpoint = w.id "
        "AND m.status = 'pending') AS pending "
        "FROM webhook_endpoint w ORDER BY id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=[decoded(row) for row in rows], total=total, paging=paging)


async def list_attempts(endpoint_id: int, paging: PageRequest) -> Page[dict[str, Any]]:
    """Return one page of the endpoint's delivery log, newest first."""
    total = await WebhookAttempt.count().where(WebhookAttempt.endpoint == endpoint_id)
    rows = await WebhookAttempt.raw(
        "SELECT a.id, a.message, a.attempt, a.status_code, a.outcome, a.duration_ms, "
        "a.response_excerpt, a.error, a.created_at, m.message_id, m.event_type, "
        "m.status AS message_status "
        "FROM webhook_attempt a JOIN outbox_message m ON m.id = a.message "
        "WHERE a.endpoint = {} ORDER BY a.id DESC LIMIT {} OFFSET {}",
        endpoint_id,
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def list_messages(endpoint_id: int, paging: PageRequest) -> Page[dict[str, Any]]:
    """Return one page of the endpoint's messages, newest first."""
    total = await OutboxMessage.count().where(OutboxMessage.endpoint == endpoint_id)
    rows = await OutboxMessage.raw(
        "SELECT id, message_id, event_type, status, attempts, next_attempt_at, "
        "last_error, created_at, finished_at FROM outbox_message "
        "WHERE endpoint = {} ORDER BY id DESC LIMIT {} OFFSET {}",
        endpoint_id,
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)
