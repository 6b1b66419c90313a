"""Outgoing mail: over SMTP when SMTP_URL is set, else as .eml files in the outbox."""

from __future__ import annotations

import copy
import datetime as dt
import email.policy
import logging
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from app.config import Settings
from app.email.parsing import LOOP_HEADER

logger = logging.getLogger(__name__)

SMTP_TIMEOUT = 30.0
# Header lines may run to RFC 5322's limit of 998 characters. At the usual 78,
# the email package folds a long URL, such as a List-Unsubscribe link, into
# RFC 2047 encoded words, which mail clients no longer read as a URL.
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)


def mark_automatic(message: EmailMessage, domain: str) -> None:
    """Mark ``message`` as machine-generated mail of ours.

    Auto-Submitted (RFC 3834) keeps auto-responders from replying to it, and
    the loop header and a Message-ID under ``domain`` (EMAIL_DOMAIN) let the
    inbound side recognise it as a loop if it comes back, so it opens no
    ticket. A Message-ID already set is kept.
    """
    message["Auto-Submitted"] = "auto-generated"
    message[LOOP_HEADER] = domain
    if message["Message-ID"] is None:
        message["Message-ID"] = make_msgid(domain=domain)


def build_message(
    mail_from: str, to: str, subject: str, text: str, domain: str
) -> EmailMessage:
    """Build a machine-generated text message: a workflow's mail, a notice,
    a password reset. ``domain`` is EMAIL_DOMAIN."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mark_automatic(message, domain)
    message.set_content(text)
    return message


def smtp_options(url: str) -> dict[str, Any]:
    """Turn ``smtp://user:password@host:port`` into aiosmtplib.send arguments.

    smtp:// upgrades the connection with STARTTLS when the server offers it
    (aiosmtplib's default); smtps:// speaks TLS from the start.
    """
    parts = urlsplit(url)
    implicit_tls = parts.scheme == "smtps"
    return {
        "hostname": parts.hostname,
        "port": parts.port or (465 if implicit_tls else 25),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "use_tls": implicit_tls,
        "timeout": SMTP_TIMEOUT,
    }


def write_to_outbox(message: EmailMessage, data_dir: Path) -> Path:
    outbox = data_dir / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{uuid.uuid4().hex}.eml"
    path.write_bytes(message.as_bytes(policy=WIRE_POLICY))
    return path


def envelope(message: EmailMessage) -> tuple[str, list[str], bytes]:
    """Return the sender, the recipients and the bytes to send of ``message``.

    Bcc recipients get the message, but not the header that names them.
    """
    sender = parseaddr(str(message["Sender"] or message["From"] or ""))[1]
    fields = [
        str(value)
        for name in ("To", "Cc", "Bcc")
        for value in message.get_all(name, [])
    ]
    recipients = [address for _, address in getaddresses(fields) if address]
    # Deleting a header gives the copy a new header list, so the original
    # keeps its Bcc.
    sent = copy.copy(message)
    del sent["Bcc"]
    return sender, recipients, sent.as_bytes(policy=WIRE_POLICY)


async def deliver(message: EmailMessage, settings: Settings) -> str:
    """Send ``message`` and return where it went: the SMTP host or the file.

    Raises aiosmtplib.SMTPException or OSError when the SMTP server cannot
    be reached or rejects the message.
    """
    if settings.smtp_url is None:
        path = write_to_outbox(message, settings.data_dir)
        logger.info("mail written to the outbox (SMTP_URL is not set) path=%s", path)
        return str(path)

    options = smtp_options(settings.smtp_url)
    sender, recipients, data = envelope(message)
    await aiosmtplib.send(data, sender=sender, recipients=recipients, **options)
    where = f"{options['hostname']}:{options['port']}"
    logger.info("mail sent over SMTP server=%s", where)
    return where
