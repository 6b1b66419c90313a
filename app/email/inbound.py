"""Turning received mail into tickets and comments.

The HTTP endpoint and the SMTP receiver both call ``receive_message``. A
message from a person opens a ticket for its sender, or is threaded onto
the ticket it replies to, by In-Reply-To, then References, then the subject
tag ``[#T-123]``. Automatic mail (auto-replies, bounces, bulk mail and our
own mail coming back) is recorded and logged but opens nothing, so two
auto-responders never reply to each other.

Every write of one message happens in one transaction, through the ticket
and comment services, so pages update live, the audit log records it and
workflow rules run: "created" and "Email received" rules run in that
transaction too, once the ticket has its comment and attachments. The row
in ``email_message`` is written first with the message's deduplication
key, and a second delivery of the same message finds that key taken and
changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from app import fields
from app.campaigns.service import record_campaign_reply
from app.comments.service import MAX_BODY, add_comment
from app.contacts.service import create_contact
from app.email.attachments import Kept, choose_kept, format_size, write_content
from app.email.parsing import SUBJECT_TAG, ParsedMessage, parse_message, text_to_html
from app.email.settings import EmailSettings
from app.email.tables import EmailMessage
from app.encryption.columns import encrypt_values
from app.errors import FieldError
from app.events.service import ChangeSet, change_set
from app.imports.fields import EMAIL_PATTERN
from app.merge import Edit
from app.sanitize import clean_rich_text
from app.tickets.service import ticket_topics, update_ticket
from app.tickets.tables import Ticket

logger = logging.getLogger(__name__)

# Statuses in which a ticket waits for the customer, or is done; a reply
# from the customer opens it again.
REOPENED_STATUSES = ("pending", "solved")
# A reply to a closed ticket opens a new one that refers to it.
CLOSED_STATUS = "closed"
NO_SUBJECT = "(no subject)"
# The priority of a ticket whose mail asks for none (app.email.parsing.
# header_priority). A reply threaded onto a ticket leaves its priority alone.
DEFAULT_PRIORITY = "medium"
NO_TEXT = "(The message has no text.)"
# Room left in a comment for the notes about shortening and attachments.
BODY_ROOM = MAX_BODY - 2_000
SUBJECT_LENGTH = 300
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

INSERT_MESSAGE = """
INSERT INTO email_message (direction, message_id, dedupe_key, in_reply_to,
    "references", from_address, to_address, subject, body_text, size, sent_at)
VALUES ('in', {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""


class MessageTooLarge(FieldError):
    """A raw message is larger than EMAIL_MAX_MESSAGE_BYTES."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            "message", f"{size} bytes", f"is larger than the limit of {limit} bytes"
        )
        self.size = size
        self.limit = limit


@dataclass
class InboundResult:
    """The outcome of one received message.

    ``outcome`` is ``created`` (a new ticket), ``threaded`` (a comment on an
    existing ticket), ``ignored`` (automatic mail), ``bounce`` or
    ``duplicate``. A duplicate was delivered before, and its ``ticket_id``
    and ``comment_id`` are those of the first delivery.
    """

    outcome: str
    message_row_id: int | None
    message_id: str
    ticket_id: int | None = None
    comment_id: int | None = None
    reason: str = ""
    attachments: list[str] = field(default_factory=list)
    dropped_attachments: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message_id": self.message_id,
            "ticket_id": self.ticket_id,
            "comment_id": self.comment_id,
            "reason": self.reason,
            "attachments": self.attachments,
            "dropped_attachments": self.dropped_attachments,
        }


async def receive_message(
    raw: bytes,
    settings: EmailSettings,
    *,
    envelope_from: str | None = None,
    received_at: dt.datetime | None = None,
    transport: str = "http",
) -> InboundResult:
    """Store one received message and open or update its ticket.

    ``envelope_from`` is the SMTP MAIL FROM address ("" for the null return
    path of a bounce), None when the message did not come over SMTP.
    Raises MessageTooLarge above the size limit and FieldError for an empty
    message; automatic mail is not an error but an ``ignored`` result.
    """
    if len(raw) > settings.max_message_bytes:
        raise MessageTooLarge(len(raw), settings.max_message_bytes)
    if not raw.strip():
        raise FieldError("message", "", "is empty; send the raw RFC 5322 message")
    now = received_at or dt.datetime.now(dt.UTC)
    # Parsing a large message takes a while, so it runs off the event loop.
    parsed = await asyncio.to_thread(
        parse_message, raw, now, settings.domain, envelope_from
    )

    async with change_set(None) as changes:
        rows = await EmailMessage.raw(
            INSERT_MESSAGE,
            parsed.message_id,
            parsed.dedupe_key,
            " ".join(parsed.in_reply_to),
            " ".join(parsed.references),
            parsed.from_address[:320],
            parsed.to_address,
            clean_line(parsed.subject),
            clean_text(parsed.text),
            parsed.size,
            parsed.sent_at,
        )
        if not rows:
            result = await duplicate_result(parsed)
        else:
            row_id = int(rows[0]["id"])
            result = await file_message(row_id, parsed, settings)
            await EmailMessage.raw(
                "UPDATE email_message SET ticket = {}, comment = {}, outcome = {}, "
                "reason = {} WHERE id = {}",
                result.ticket_id,
                result.comment_id,
                result.outcome,
                result.reason,
                row_id,
            )
            if result.outcome in ("created", "threaded"):
                queue_received(changes, result, parsed)

    logger.info(
        "email received transport=%s outcome=%s message_row_id=%s ticket_id=%s "
        "comment_id=%s from=%s message_id=%s reason=%s",
        transport,
        result.outcome,
        result.message_row_id,
        result.ticket_id,
        result.comment_id,
        parsed.from_address or "-",
        parsed.message_id,
        result.reason or "-",
    )
    return result


async def duplicate_result(parsed: ParsedMessage) -> InboundResult:
    rows = await EmailMessage.raw(
        "SELECT id, ticket, comment FROM email_message WHERE dedupe_key = {}",
        parsed.dedupe_key,
    )
    first = rows[0] if rows else {"id": None, "ticket": None, "comment": None}
    return InboundResult(
        outcome="duplicate",
        message_row_id=first["id"],
        message_id=parsed.message_id,
        ticket_id=first["ticket"],
        comment_id=first["comment"],
        reason="delivered before",
    )


async def file_message(
    row_id: int, parsed: ParsedMessage, settings: EmailSettings
) -> InboundResult:
    """Decide what a new message becomes and write it, inside the open transaction."""
    base = InboundResult(
        outcome="ignored", message_row_id=row_id, message_id=parsed.message_id
    )
    if parsed.automatic == "bounce":
        for bounced_id in parsed.bounced_ids:
            await record_campaign_reply(bounced_id, "bounce")
        return await record_bounce(base, parsed)
    if not parsed.automatic and parsed.subject.casefold().startswith("unsubscribe "):
        # A mail to a campaign's mailto unsubscribe address.
        if await record_campaign_reply(parsed.subject, "unsubscribe") is not None:
            base.reason = "campaign unsubscribe"
            return base
    if not parsed.automatic:
        # A reply to a campaign is recorded on it, and files as any mail does.
        for referenced in dict.fromkeys([*parsed.in_reply_to, *parsed.references]):
            if await record_campaign_reply(referenced, "reply") is not None:
                break
    if parsed.automatic:
        base.reason = f"{parsed.automatic}: {parsed.automatic_detail}"
        base.ticket_id = await thread_by_ids(parsed)
        return base
    if not parsed.from_address:
        base.reason = "no sender address in From"
        return base

    contact_id, account_id = await sender_contact(parsed, settings)
    ticket_id, follow_up_of = await find_ticket(parsed, contact_id, account_id)
    if ticket_id is None:
        ticket_id = await open_ticket(parsed, contact_id, account_id, follow_up_of)
        base.outcome = "created"
    else:
        base.outcome = "threaded"
    base.ticket_id = ticket_id

    kept = choose_kept(
        parsed.attachments,
        settings.max_attachment_bytes,
        settings.max_attachments_bytes,
    )
    base.comment_id = await add_comment(
        "ticket", ticket_id, comment_body(parsed, kept), None
    )
    await store_attachments(row_id, ticket_id, kept, settings)
    base.attachments = [item.attachment.filename for item in kept if item.stored]
    base.dropped_attachments = [
        item.attachment.filename for item in kept if not item.stored
    ]
    if base.outcome == "threaded":
        await reopen(ticket_id)
    return base


async def record_bounce(base: InboundResult, parsed: ParsedMessage) -> InboundResult:
    """Mark the outgoing message a bounce returns, if it is one of ours."""
    base.outcome = "bounce"
    base.reason = f"bounce: {parsed.automatic_detail}"
    if not parsed.bounced_ids:
        return base
    rows = await EmailMessage.raw(
        "UPDATE email_message SET status = 'bounced', error = {} "
        "WHERE direction = 'out' AND message_id = ANY({}) RETURNING id, ticket",
        clean_line(parsed.subject)[:500],
        parsed.bounced_ids,
    )
    if rows:
        base.ticket_id = rows[0]["ticket"]
        logger.warning(
            "email bounced message_row_ids=%s ticket_id=%s subject=%s",
            [row["id"] for row in rows],
            base.ticket_id,
            parsed.subject,
        )
    return base


async def thread_by_ids(parsed: ParsedMessage) -> int | None:
    """Return the ticket of the newest known message among In-Reply-To, then
    References (last first)."""
    for ids in (parsed.in_reply_to, list(reversed(parsed.references))):
        if not ids:
            continue
        rows = await EmailMessage.raw(
            "SELECT m.ticket, m.message_id FROM email_message m "
            "JOIN ticket t ON t.id = m.ticket "
            "WHERE m.message_id = ANY({}) AND m.outcome <> 'ignored' "
            "ORDER BY m.id DESC",
            ids,
        )
        by_id = {row["message_id"]: row["ticket"] for row in rows}
        for message_id in ids:
            if message_id in by_id:
                return int(by_id[message_id])
    return None


async def find_ticket(
    parsed: ParsedMessage, contact_id: int | None, account_id: int | None
) -> tuple[int | None, int | None]:
    """Return (ticket to thread onto, closed ticket this follows up).

    A subject tag alone is trusted only from the ticket's requester or a
    contact of its account, because anyone can type a tag.
    """
    ticket_id = await thread_by_ids(parsed)
    if ticket_id is None:
        tag = SUBJECT_TAG.search(parsed.subject)
        if tag is not None:
            rows = await Ticket.raw(
                "SELECT id, requester, account FROM ticket WHERE id = {}",
                int(tag.group(1)),
            )
            if rows and (
                (contact_id is not None and rows[0]["requester"] == contact_id)
                or (account_id is not None and rows[0]["account"] == account_id)
            ):
                ticket_id = rows[0]["id"]
            elif rows:
                logger.info(
                    "subject tag not trusted ticket_id=%s from=%s",
                    rows[0]["id"],
                    parsed.from_address,
                )
    if ticket_id is None:
        return None, None
    status = await Ticket.raw("SELECT status FROM ticket WHERE id = {}", ticket_id)
    if status and status[0]["status"] == CLOSED_STATUS:
        return None, ticket_id
    return ticket_id, None


async def sender_contact(
    parsed: ParsedMessage, settings: EmailSettings
) -> tuple[int | None, int | None]:
    """Find or create the sender's contact; return (contact id, account id).

    A transaction-level lock on the address keeps two messages from one new
    sender from creating two contacts.
    """
    address = parsed.from_address
    await Ticket.raw("SELECT pg_advisory_xact_lock(hashtext({}))", "email:" + address)
    rows = await Ticket.raw(
        "SELECT id, account FROM contact WHERE email = {} ORDER BY id LIMIT 1", address
    )
    if rows:
        return rows[0]["id"], rows[0]["account"]
    if len(address) > 254 or not EMAIL_PATTERN.fullmatch(address):
        logger.info("sender address not valid for a contact from=%s", address)
        return None, None
    account_id = await account_for_domain(address.rpartition("@")[2], settings)
    first, last = split_name(parsed.from_name, address)
    values = {"first_name": first, "last_name": last, "email": address}
    if account_id is not None:
        values["account"] = str(account_id)
    contact_id = await create_contact(values, None)
    return contact_id, account_id


async def account_for_domain(domain: str, settings: EmailSettings) -> int | None:
    """Return the account whose domain or website is ``domain``, but for free mail."""
    domain = domain.lower()
    if domain in settings.free_mail_domains:
        return None
    rows = await Ticket.raw(
        "SELECT id FROM account WHERE lower(domain) = {} OR regexp_replace("
        "lower(website), '^([a-z]+://)?(www\\.)?([^/:?#]+).*$', '\\3') = {} "
        "ORDER BY id LIMIT 1",
        domain,
        domain,
    )
    return rows[0]["id"] if rows else None


def split_name(name: str, address: str) -> tuple[str, str]:
    name = clean_line(name).strip("\"' ")
    if not name or "@" in name:
        return address.partition("@")[0][:120], ""
    first, _, last = name.partition(" ")
    return first[:120], last.strip()[:120]


async def open_ticket(
    parsed: ParsedMessage,
    contact_id: int | None,
    account_id: int | None,
    follow_up_of: int | None,
) -> int:
    """Create the ticket of a new message in its own nested change set.

    Its event is written before the first comment's, so pages and rules see
    the ticket first.
    """
    subject = clean_line(parsed.subject)[:SUBJECT_LENGTH] or NO_SUBJECT
    subject = fields.text("subject", subject, required=True, max_length=300)
    description = f"Follow-up to #T-{follow_up_of}." if follow_up_of else ""
    priority = parsed.priority or DEFAULT_PRIORITY
    async with change_set(None) as changes:
        rows = await Ticket.insert(
            Ticket(
                subject=subject,
                **encrypt_values(Ticket, {"description": description}),
                status="new",
                priority=priority,
                channel="email",
                requester=contact_id,
                account=account_id,
            )
        ).returning(Ticket.id)
        ticket_id = int(rows[0]["id"])
        changes.add(
            "ticket.created",
            "ticket",
            ticket_id,
            ticket_topics(ticket_id),
            {
                "status": [None, "new"],
                "priority": [None, priority],
                "channel": [None, "email"],
                "requester": [None, contact_id],
                "account": [None, account_id],
            },
        )
    logger.info(
        "ticket created from email ticket_id=%s contact_id=%s account_id=%s",
        ticket_id,
        contact_id,
        account_id,
    )
    return ticket_id


async def reopen(ticket_id: int) -> None:
    """Open a ticket again that waited on the customer or was solved."""
    rows = await Ticket.raw("SELECT status FROM ticket WHERE id = {}", ticket_id)
    status = rows[0]["status"] if rows else None
    if status not in REOPENED_STATUSES:
        return
    result = await update_ticket(
        ticket_id, {"status": Edit(base=status, new="open")}, None
    )
    if result.conflicts:
        logger.info(
            "ticket not reopened, its status changed meanwhile ticket_id=%s", ticket_id
        )


def comment_body(parsed: ParsedMessage, kept: list[Kept]) -> str:
    """Build the comment's HTML: the body, then notes on shortening and attachments."""
    if parsed.html:
        # Cleaned first, because styling and markup can make up most of an
        # HTML mail, and only what is left counts against the comment's limit.
        body = clean_rich_text(parsed.html)
    else:
        body = text_to_html(clean_text(parsed.text))
    notes: list[str] = []
    if len(body) > BODY_ROOM:
        body = body[:BODY_ROOM]
        notes.append("The message was shortened here; its full text is stored.")
    dropped = [item for item in kept if not item.stored]
    for item in dropped:
        notes.append(
            f"Attachment {item.attachment.filename} "
            f"({format_size(len(item.attachment.content))}) was not kept: "
            f"{item.reason}."
        )
    if not body.strip() and not parsed.text.strip():
        body = NO_TEXT
    if parsed.html:
        return body + "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    return "\n\n".join([body, *(html.escape(note) for note in notes)])


async def store_attachments(
    row_id: int, ticket_id: int, kept: list[Kept], settings: EmailSettings
) -> None:
    """Write the kept attachments' files and the metadata of all of them.

    NOTE: a file written here stays if the transaction then rolls back. It
    is named by its content, so a later delivery reuses it, and nothing
    links to it otherwise.
    """
    for item in kept:
        attachment = item.attachment
        digest = attachment.sha256
        if item.stored:
            digest = await asyncio.to_thread(
                write_content, settings.attachment_dir, attachment
            )
        await EmailMessage.raw(
            "INSERT INTO email_attachment (message, ticket, filename, content_type, "
            "size, sha256, stored) VALUES ({}, {}, {}, {}, {}, {}, {})",
            row_id,
            ticket_id,
            attachment.filename,
            attachment.content_type,
            len(attachment.content),
            digest,
            item.stored,
        )


def queue_received(
    changes: ChangeSet, result: InboundResult, parsed: ParsedMessage
) -> None:
    """Run the "Email received" workflow rules of the ticket in the
    transaction that records the message, once the message is filed."""
    from app.workflows.engine import queue_trigger

    assert result.ticket_id is not None
    details = {
        "from": parsed.from_address,
        "subject": clean_line(parsed.subject)[:300],
        "message_id": parsed.message_id,
        "new_ticket": result.outcome == "created",
        "attachments": len(result.attachments),
    }
    queue_trigger(changes, "email.received", "ticket", result.ticket_id, details)


def clean_line(text: str) -> str:
    return " ".join(CONTROL.sub("", text).split())


def clean_text(text: str) -> str:
    return CONTROL.sub("", text).replace("\x00", "")
