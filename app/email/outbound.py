"""Agents' replies to a ticket's requester: stored as a public comment, sent by a job.

``send_reply`` writes the comment and an outgoing ``email_message`` row in
one transaction. The row fixes the Message-ID, In-Reply-To, References
and subject before anything is sent, so a customer's reply threads onto
the ticket whichever delivery try succeeded. After commit the
``send_ticket_reply`` job (workers/email.py) sends the row, with retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from app import fields
from app.comments.service import MAX_BODY, add_comment
from app.email.parsing import LOOP_HEADER, SUBJECT_TAG, html_to_text
from app.email.settings import EmailSettings
from app.email.tables import EmailMessage as EmailMessageRow
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.sanitize import clean_rich_text

logger = logging.getLogger(__name__)

# References keeps the first id and the newest ones within this many ids,
# as RFC 5322 section 3.6.4 suggests trimming long chains.
MAX_REFERENCES = 20
REPLY_CONTEXT = """
SELECT t.id, t.subject, t.status, t.priority,
       c.id AS contact_id, c.email, c.first_name, c.last_name,
       a.name AS account_name
FROM ticket t
LEFT JOIN contact c ON c.id = t.requester
LEFT JOIN account a ON a.id = t.account
WHERE t.id = {}
"""
LAST_INBOUND = """
SELECT message_id, "references", subject FROM email_message
WHERE ticket = {} AND direction = 'in' AND outcome IN ('created', 'threaded')
ORDER BY sent_at DESC, id DESC LIMIT 1
"""

Enqueue = Callable[[int], Awaitable[None]]


def ticket_tag(ticket_id: int) -> str:
    return f"[#T-{ticket_id}]"


def tagged_subject(ticket_id: int, subject: str) -> str:
    """Return ``subject`` ending in the ticket's tag, unless it has a tag."""
    base = subject.strip()
    if SUBJECT_TAG.search(base):
        return base
    return f"{base} {ticket_tag(ticket_id)}".strip()


def reply_subject(ticket_id: int, subject: str) -> str:
    """Return ``Re: [#T-1] subject``, tagging a subject that has no tag yet."""
    base = subject.strip()
    while base.lower().startswith(("re:", "aw:", "sv:")):
        base = base[3:].strip()
    if not SUBJECT_TAG.search(base):
        base = f"{ticket_tag(ticket_id)} {base}".strip()
    return f"Re: {base}"


async def reply_context(
    ticket_id: int, agent_name: str, agent_email: str
) -> dict[str, Any]:
    """Return the values reply templates see for this ticket and agent."""
    rows = await EmailMessageRow.raw(REPLY_CONTEXT, ticket_id)
    if not rows:
        raise NotFound("ticket", ticket_id)
    row = rows[0]
    name = " ".join(part for part in (row["first_name"], row["last_name"]) if part)
    return {
        "ticket": {
            "id": row["id"],
            "tag": ticket_tag(row["id"]),
            "subject": row["subject"],
            "status": row["status"],
            "priority": row["priority"],
        },
        "contact": {
            "name": name,
            "first_name": row["first_name"] or "",
            "last_name": row["last_name"] or "",
            "email": row["email"] or "",
        },
        "account": {"name": row["account_name"] or ""},
        "agent": {"name": agent_name, "email": agent_email},
    }


def chain(references: str, message_id: str) -> list[str]:
    ids = [*references.split(), message_id]
    ids = list(dict.fromkeys(item for item in ids if item))
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


async def send_reply(
    ticket_id: int,
    body_raw: str | None,
    actor_id: int,
    settings: EmailSettings,
    enqueue: Enqueue,
) -> tuple[int, int]:
    """Store a reply as a public comment and queue its mail; return the
    comment id and the outgoing message row id.

    Raises FieldError naming ``body`` for an empty or overlong reply and
    naming ``to`` when the ticket's requester has no email address.
    """
    body = fields.text("body", body_raw, required=True, max_length=MAX_BODY)
    rows = await EmailMessageRow.raw(REPLY_CONTEXT, ticket_id)
    if not rows:
        raise NotFound("ticket", ticket_id)
    ticket = rows[0]
    if not ticket["email"]:
        raise FieldError(
            "to", None, "is missing: the ticket's requester has no email address"
        )
    to = formataddr(
        (
            " ".join(p for p in (ticket["first_name"], ticket["last_name"]) if p),
            ticket["email"],
        )
    )
    last = await EmailMessageRow.raw(LAST_INBOUND, ticket_id)
    in_reply_to = last[0]["message_id"] if last else ""
    references = chain(last[0]["references"], in_reply_to) if last else []
    subject = reply_subject(ticket_id, ticket["subject"])
    message_id = f"{uuid.uuid4().hex}@{settings.domain}"
    text = html_to_text(clean_rich_text(body))

    async with change_set(actor_id) as changes:
        comment_id = await add_comment("ticket", ticket_id, body, actor_id)
        inserted = await EmailMessageRow.raw(
            "INSERT INTO email_message (direction, ticket, comment, message_id, "
            'dedupe_key, in_reply_to, "references", to_address, subject, body_text, '
            "status, author) VALUES ('out', {}, {}, {}, {}, {}, {}, {}, {}, {}, "
            "'queued', {}) RETURNING id",
            ticket_id,
            comment_id,
            message_id,
            uuid.uuid4().hex + uuid.uuid4().hex,
            in_reply_to,
            " ".join(references),
            to,
            subject,
            text,
            actor_id,
        )
        row_id = int(inserted[0]["id"])

        async def queue_mail() -> None:
            await enqueue(row_id)

        changes.after_commit.append(queue_mail)

    logger.info(
        "ticket reply queued ticket_id=%s comment_id=%s message_row_id=%s user_id=%s",
        ticket_id,
        comment_id,
        row_id,
        actor_id,
    )
    return comment_id, row_id


async def load_outgoing(row_id: int) -> dict[str, Any] | None:
    rows = await EmailMessageRow.raw(
        'SELECT m.id, m.ticket, m.message_id, m.in_reply_to, m."references", '
        "m.to_address, m.subject, m.body_text, m.status, c.body AS html, "
        "u.name AS author_name "
        "FROM email_message m LEFT JOIN comment c ON c.id = m.comment "
        "LEFT JOIN app_user u ON u.id = m.author "
        "WHERE m.id = {} AND m.direction = 'out'",
        row_id,
    )
    return rows[0] if rows else None


def build_reply(row: dict[str, Any], mail_from: str, domain: str) -> EmailMessage:
    """Build the MIME message of an outgoing row: text and HTML alternatives."""
    message = EmailMessage()
    # Customers reply to MAIL_FROM, which must reach the inbound endpoint or
    # the SMTP receiver.
    message["From"] = mail_from
    message["To"] = row["to_address"]
    message["Subject"] = row["subject"]
    message["Message-ID"] = f"<{row['message_id']}>"
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    if row["in_reply_to"]:
        message["In-Reply-To"] = f"<{row['in_reply_to']}>"
    if row["references"]:
        message["References"] = " ".join(
            f"<{item}>" for item in row["references"].split()
        )
    # Replies that come back carrying this header are our own mail (a loop).
    message[LOOP_HEADER] = domain
    message.set_content(row["body_text"] or "")
    if row["html"]:
        message.add_alternative(clean_rich_text(row["html"]), subtype="html")
    return message


async def mark_sent(row_id: int, where: str) -> None:
    await EmailMessageRow.raw(
        "UPDATE email_message SET status = 'sent', sent_at = now(), error = '', "
        "tries = tries + 1 WHERE id = {}",
        row_id,
    )
    logger.info("ticket reply sent message_row_id=%s to=%s", row_id, where)


async def mark_failed(row_id: int, error: str, final: bool) -> None:
    await EmailMessageRow.raw(
        "UPDATE email_message SET status = {}, error = {}, tries = tries + 1 "
        "WHERE id = {}",
        "failed" if final else "queued",
        error[:2000],
        row_id,
    )
