"""Email messages of tickets, their attachments, and reply templates."""

from __future__ import annotations

from piccolo.columns import (
    Boolean,
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
from app.comments.tables import Comment
from app.tickets.tables import Ticket

DIRECTIONS = ("in", "out")
# Outcomes of inbound messages, and delivery statuses of outbound ones.
INBOUND_OUTCOMES = ("created", "threaded", "ignored", "bounce")
OUTBOUND_STATUSES = ("queued", "sent", "failed", "bounced")


class EmailMessage(Table, tablename="email_message"):
    """One message received or sent, kept for threading and deduplication."""

    id: Serial
    direction = Varchar(length=3)
    ticket = ForeignKey(Ticket, null=True, default=None, on_delete=OnDelete.cascade)
    comment = ForeignKey(Comment, null=True, default=None, on_delete=OnDelete.set_null)
    # Without angle brackets, as in the header.
    message_id = Varchar(length=998, index=True)
    # SHA-256 of the Message-ID and the body: a second delivery of the same
    # message has the same key, and the unique index makes it a no-op.
    dedupe_key = Varchar(length=64, unique=True)
    in_reply_to = Text(default="")
    # The References chain, space-separated ids without angle brackets.
    references = Text(default="")
    from_address = Varchar(length=320, default="")
    to_address = Text(default="")
    subject = Text(default="")
    # The plain text of the body; for HTML-only mail, the text derived from it.
    body_text = Text(default="")
    outcome = Varchar(length=20, default="")
    reason = Text(default="")
    status = Varchar(length=20, default="")
    error = Text(default="")
    tries = Integer(default=0)
    author = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    size = Integer(default=0)
    # The message's Date header, or the receive time when it is missing or invalid.
    sent_at = Timestamptz(default=TimestamptzNow())
    created_at = Timestamptz(default=TimestamptzNow())


class EmailAttachment(Table, tablename="email_attachment"):
    """An attachment's metadata; the content is a file named by its SHA-256."""

    id: Serial
    message = ForeignKey(EmailMessage, on_delete=OnDelete.cascade)
    ticket = ForeignKey(Ticket, on_delete=OnDelete.cascade)
    filename = Varchar(length=255)
    content_type = Varchar(length=255)
    size = Integer()
    sha256 = Varchar(length=64)
    # False for an attachment over a size limit, which is listed but not kept.
    stored = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())


class ReplyTemplate(Table, tablename="reply_template"):
    """A canned reply whose subject and body may use placeholders."""

    id: Serial
    name = Varchar(length=120, unique=True)
    body = Text()
    updated_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
