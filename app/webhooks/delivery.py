"""Delivering due outbox messages, one locked row at a time.

``deliver_next`` claims the oldest due message with ``FOR UPDATE SKIP
LOCKED`` and keeps the row locked while it is sent, so two workers never
send the same attempt at once. The attempt's log row and the message's new
state commit together. A worker killed mid-attempt rolls all of it back, so
the message is sent again later: delivery is at least once.

A webhook message is sent only when no earlier message with the same
``ordering_key`` (the endpoint and the record) is still pending. So one
record's messages reach an endpoint in the order they were written, and a
message that is being retried holds back the later ones of its record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import httpx
import msgspec
from standardwebhooks import Webhook

from app.config import Settings
from app.encryption.columns import decrypt_value
from app.encryption.keyring import DecryptionError
from app.errors import FieldError
from app.events.tables import Event as EventRow
from app.webhooks import settings
from app.webhooks.addresses import check_target
from app.webhooks.outbox import (
    MAIL,
    NOTIFY,
    RESCORE,
    RULE_WEBHOOK,
    WEBHOOK,
    encode,
    insert_message,
)
from app.webhooks.tables import WebhookEndpoint

logger = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
REFUSED = "refused"
USER_AGENT = "Switchboard-Webhooks/1"

CLAIM_SQL = """
SELECT m.id, m.kind, m.endpoint, m.message_id, m.event_type, m.payload,
       m.ordering_key, m.attempts, m.schedule_start,
       e.url, e.secret, e.description
FROM outbox_message m
LEFT JOIN webhook_endpoint e ON e.id = m.endpoint
WHERE m.status = 'pending' AND m.next_attempt_at <= now()
  AND (m.endpoint IS NULL OR e.enabled)
  AND NOT EXISTS (
      SELECT 1 FROM outbox_message earlier
      WHERE earlier.ordering_key = m.ordering_key
        AND earlier.status = 'pending' AND earlier.id < m.id
  )
{only}
ORDER BY m.next_attempt_at, m.id
LIMIT 1
FOR UPDATE OF m SKIP LOCKED
"""


class UnsendableMail(ValueError):
    """A mail message could not be built from its payload, for example a
    header value with a line break, so no attempt can send it."""


@dataclasses.dataclass
class Outcome:
    """The result of one attempt."""

    outcome: str
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    duration_ms: float = 0.0
    # A failure that another attempt would repeat, so the message is not retried.
    permanent: bool = False
    # The exception an attempt raised unexpectedly, logged with its traceback
    # once the attempt is recorded.
    exception: BaseException | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED


def signed_headers(
    secret: str, message_id: str, body: str, now: dt.datetime
) -> dict[str, str]:
    """Return the Standard Webhooks headers for one attempt at ``now``."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


async def post_webhook(row: dict[str, Any]) -> Outcome:
    """POST a webhook message once, to the checked address of its endpoint."""
    started = time.perf_counter()
    url = str(row["url"])
    try:
        target = await check_target("url", url)
    except FieldError as error:
        return Outcome(REFUSED, error=error.message)

    try:
        secret = decrypt_value(WebhookEndpoint, "secret", row["secret"]) or ""
    except DecryptionError:
        return Outcome(
            FAILED,
            error="the signing secret could not be decrypted with the configured "
            "keys; add the key that encrypted it or rotate the secret",
        )
    headers = signed_headers(
        secret, row["message_id"], row["payload"], dt.datetime.now(dt.UTC)
    )
    headers["host"] = (
        target.host if target.port in (80, 443) else (f"{target.host}:{target.port}")
    )
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = settings.attempt_timeout()

    try:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        ) as client:
            response = await client.post(
                target.url_for(url),
                content=row["payload"].encode(),
                headers=headers,
                extensions=extensions,
            )
    except httpx.TimeoutException as error:
        return Outcome(
            FAILED,
            error=f"timed out after {timeout:g} s ({type(error).__name__})",
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    except httpx.HTTPError as error:
        return Outcome(
            FAILED,
            error=f"{type(error).__name__}: {error}",
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    duration_ms = (time.perf_counter() - started) * 1000
    excerpt = response.text[: settings.RESPONSE_EXCERPT]
    if 200 <= response.status_code < 300:
        return Outcome(DELIVERED, response.status_code, excerpt, "", duration_ms)
    return Outcome(
        FAILED,
        response.status_code,
        excerpt,
        f"status {response.status_code}",
        duration_ms,
    )


async def run_side_effect(row: dict[str, Any]) -> Outcome:
    """Run a message that is not a webhook: a notification, a mail, a rescore."""
    started = time.perf_counter()
    payload = msgspec.json.decode(row["payload"])
    try:
        if row["kind"] == NOTIFY:
            await notify_users(payload)
        elif row["kind"] == MAIL:
            await send_mail(payload)
        elif row["kind"] == RESCORE:
            from app.workflows.jobs import rescore

            await rescore(
                {"job_id": row["message_id"]},
                payload["record_type"],
                payload["record_id"],
            )
        else:
            return Outcome(FAILED, error=f"unknown message kind {row['kind']!r}")
    except OSError as error:
        return Outcome(
            FAILED,
            error=f"{type(error).__name__}: {error}",
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    except UnsendableMail as error:
        return Outcome(
            FAILED,
            error=f"the mail cannot be built, so it is not retried: {error}",
            duration_ms=(time.perf_counter() - started) * 1000,
            permanent=True,
        )
    return Outcome(DELIVERED, duration_ms=(time.perf_counter() - started) * 1000)


async def notify_users(payload: dict[str, Any]) -> None:
    """Push a toast to each user's pages, inside the claim's transaction."""
    from app.events.service import change_set
    from app.workflows.jobs import NOTIFICATION

    async with change_set(None) as changes:
        changes.add(
            NOTIFICATION,
            "notification",
            int(payload.get("rule_id") or 0),
            [f"user:{user_id}" for user_id in payload["user_ids"]],
            {"message": payload["message"], "link": payload["link"]},
        )


async def send_mail(payload: dict[str, Any]) -> None:
    """Send one mail through SMTP or into the outbox folder (app.mail.deliver)."""
    import aiosmtplib

    from app.email.settings import EmailSettings
    from app.mail import build_message, deliver

    config = Settings.from_env()
    try:
        message = build_message(
            config.mail_from,
            payload["to"],
            payload["subject"],
            payload["text"],
            EmailSettings.from_env().domain,
        )
    except ValueError as error:
        # The email package raises ValueError for a header value it rejects,
        # such as one with CR or LF.
        raise UnsendableMail(str(error)) from error
    try:
        await deliver(message, config)
    except aiosmtplib.SMTPException as error:
        raise OSError(f"SMTP failed: {error}") from error


async def log_attempt(row: dict[str, Any], attempt: int, result: Outcome) -> None:
    await EventRow.raw(
        "INSERT INTO webhook_attempt (message, endpoint, attempt, status_code, "
        "outcome, duration_ms, response_excerpt, error) "
        "VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        row["id"],
        row["endpoint"],
        attempt,
        result.status_code,
        result.outcome,
        result.duration_ms,
        result.excerpt,
        result.error[:2000],
    )


def message_origin(row: dict[str, Any]) -> str:
    """Describe the rule and record a message is about, for log lines, as
    ``rule_id=7 ticket_id=12``; ``rule_id=None`` for a message of no rule.

    A webhook's record is in its ordering key (endpoint, record type and id)
    and a rule's webhook names the rule in its body. Other messages name
    both in their payload (``record_side_effect``).
    """
    rule_id = record_type = record_id = None
    try:
        payload = msgspec.json.decode(row["payload"])
    except msgspec.DecodeError:
        payload = None
    if row["kind"] == WEBHOOK:
        _, _, record = str(row.get("ordering_key") or "").partition(":")
        record_type, _, record_id = record.partition(":")
        if row.get("event_type") == RULE_WEBHOOK and isinstance(payload, dict):
            rule = (payload.get("data") or {}).get("rule") or {}
            rule_id = rule.get("id") if isinstance(rule, dict) else None
    elif isinstance(payload, dict):
        rule_id = payload.get("rule_id")
        record_type = payload.get("record_type")
        record_id = payload.get("record_id")
    return f"rule_id={rule_id} {record_type or 'record'}_id={record_id or None}"


async def finish_attempt(
    row: dict[str, Any], result: Outcome, job_id: str | None = None
) -> str:
    """Record the attempt's result on the message; return its new status.

    A failed attempt that will be retried logs a WARNING, and the last one,
    after which the message is given up, an ERROR. ``job_id`` is the arq job
    that made the attempt.
    """
    attempt = int(row["attempts"]) + 1
    if row["kind"] == WEBHOOK:
        await log_attempt(row, attempt, result)
    if result.delivered:
        await EventRow.raw(
            "UPDATE outbox_message SET status = 'delivered', attempts = {}, "
            "last_error = '', finished_at = now() WHERE id = {}",
            attempt,
            row["id"],
        )
        if row["endpoint"] is not None:
            await EventRow.raw(
                "UPDATE webhook_endpoint SET consecutive_failures = 0 "
                "WHERE id = {} AND consecutive_failures <> 0",
                row["endpoint"],
            )
        return DELIVERED
    delay = None
    if not result.permanent:
        delay = settings.retry_delay(attempt - int(row["schedule_start"]))
    if delay is not None:
        await EventRow.raw(
            "UPDATE outbox_message SET attempts = {}, last_error = {}, "
            "next_attempt_at = now() + make_interval(secs => {}) WHERE id = {}",
            attempt,
            result.error[:2000],
            delay,
            row["id"],
        )
        logger.warning(
            "outbox message failed, retrying message_id=%s id=%s kind=%s "
            "endpoint_id=%s %s job_id=%s attempt=%d in=%.1fs error=%s",
            row["message_id"],
            row["id"],
            row["kind"],
            row["endpoint"],
            message_origin(row),
            job_id,
            attempt,
            delay,
            result.error,
            exc_info=result.exception,
        )
        return PENDING
    await EventRow.raw(
        "UPDATE outbox_message SET status = 'failed', attempts = {}, "
        "last_error = {}, finished_at = now() WHERE id = {}",
        attempt,
        result.error[:2000],
        row["id"],
    )
    logger.error(
        "outbox message failed, giving up message_id=%s id=%s kind=%s "
        "endpoint_id=%s %s job_id=%s attempts=%d error=%s",
        row["message_id"],
        row["id"],
        row["kind"],
        row["endpoint"],
        message_origin(row),
        job_id,
        attempt,
        result.error,
        exc_info=result.exception,
    )
    if row["endpoint"] is not None:
        await count_failed_message(int(row["endpoint"]))
    return FAILED


async def count_failed_message(endpoint_id: int) -> None:
    """Count a message that failed every attempt; disable the endpoint after
    ``CRM_WEBHOOK_DISABLE_AFTER`` such messages in a row."""
    rows = await EventRow.raw(
        "UPDATE webhook_endpoint SET consecutive_failures = consecutive_failures + 1 "
        "WHERE id = {} RETURNING consecutive_failures, enabled, url, description",
        endpoint_id,
    )
    if not rows or not rows[0]["enabled"]:
        return
    failures = int(rows[0]["consecutive_failures"])
    if failures < settings.disable_after():
        return
    reason = (
        f"Disabled automatically after {failures} messages in a row failed "
        f"every attempt."
    )
    await EventRow.raw(
        "UPDATE webhook_endpoint SET enabled = false, disabled_reason = {}, "
        "updated_at = now() WHERE id = {}",
        reason,
        endpoint_id,
    )
    logger.error(
        "webhook endpoint disabled endpoint_id=%s failed_messages=%d url=%s",
        endpoint_id,
        failures,
        rows[0]["url"],
    )
    await notify_admins(endpoint_id, str(rows[0]["url"]), reason)


async def notify_admins(endpoint_id: int, url: str, reason: str) -> None:
    """Queue a toast and a mail to every administrator, in this transaction."""
    from app.access.service import admin_user_ids
    from app.auth.tables import User

    admin_ids = sorted(await admin_user_ids())
    if not admin_ids:
        logger.warning(
            "no administrator to tell of a disabled endpoint endpoint_id=%s",
            endpoint_id,
        )
        return
    message = f"Webhook endpoint {url} was disabled. {reason}"
    link = f"/admin/webhooks/{endpoint_id}"
    await insert_message(
        NOTIFY,
        encode({"user_ids": admin_ids, "message": message, "link": link}),
    )
    admins = await User.select(User.email).where(User.id.is_in(admin_ids))
    for admin in admins:
        await insert_message(
            MAIL,
            encode(
                {
                    "to": admin["email"],
                    "subject": "Switchboard: a webhook endpoint was disabled",
                    "text": f"{message}\n\nRe-enable it at {link} once it works.",
                }
            ),
        )


async def attempt_in_savepoint(row: dict[str, Any]) -> Outcome:
    """Attempt a claimed message. An unexpected error rolls back what the
    attempt wrote and counts as a failed attempt, so a message that always
    raises is retried on schedule and then given up, not claimed forever.
    ``finish_attempt`` logs the error with its traceback."""
    transaction = EventRow._meta.db.current_transaction.get()
    assert transaction is not None, "claimed inside a transaction"
    savepoint = await transaction.savepoint()
    try:
        if row["kind"] == WEBHOOK:
            result = await post_webhook(row)
        else:
            result = await run_side_effect(row)
    except Exception as error:
        await savepoint.rollback_to()
        return Outcome(
            FAILED, error=f"{type(error).__name__}: {error}", exception=error
        )
    await savepoint.release()
    return result


async def deliver_next(
    only_id: int | None = None, job_id: str | None = None
) -> str | None:
    """Claim one due message, attempt it and record the result.

    Returns the message's new status, or None when nothing was due (or
    ``only_id`` was not due, is held back or is locked by another worker).
    ``job_id`` is the arq job this runs in, for the logs.
    """
    only = "AND m.id = {}" if only_id is not None else ""
    arguments = [only_id] if only_id is not None else []
    async with EventRow._meta.db.transaction():
        rows = await EventRow.raw(CLAIM_SQL.format(only=only), *arguments)
        if not rows:
            return None
        row = rows[0]
        result = await attempt_in_savepoint(row)
        status = await finish_attempt(row, result, job_id)
    logger.info(
        "outbox attempt message_id=%s id=%s kind=%s endpoint_id=%s attempt=%d "
        "outcome=%s status_code=%s duration_ms=%.1f",
        row["message_id"],
        row["id"],
        row["kind"],
        row["endpoint"],
        int(row["attempts"]) + 1,
        result.outcome,
        result.status_code,
        result.duration_ms,
    )
    return status


async def deliver_due(limit: int = 100, job_id: str | None = None) -> int:
    """Attempt up to ``limit`` due messages one after another; return how many."""
    attempted = 0
    while attempted < limit:
        if await deliver_next(job_id=job_id) is None:
            break
        attempted += 1
    return attempted


async def next_due_in() -> float | None:
    """Return seconds until the next pending message of an enabled endpoint
    (or of no endpoint) becomes due, or None when none is waiting.

    Messages already due are left out: ``deliver_due`` found them locked by
    another worker or held back behind an earlier message of their record.
    """
    rows = await EventRow.raw(
        "SELECT extract(epoch FROM min(m.next_attempt_at) - now()) AS wait "
        "FROM outbox_message m LEFT JOIN webhook_endpoint e ON e.id = m.endpoint "
        "WHERE m.status = 'pending' AND m.next_attempt_at > now() "
        "AND (m.endpoint IS NULL OR e.enabled)"
    )
    wait = rows[0]["wait"] if rows else None
    return None if wait is None else max(0.0, float(wait))
