"""Reading raw RFC 5322 messages: headers, body text, attachments, automatic mail.

Everything here is pure: ``parse_message`` takes bytes and returns a
``ParsedMessage``, and the service decides what to store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from pathlib import PurePosixPath, PureWindowsPath

MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
# The tag that outgoing subjects carry and replies are threaded by.
SUBJECT_TAG = re.compile(r"\[#T-(\d{1,10})\]")
AUTOMATIC_PRECEDENCE = ("bulk", "junk", "list")
BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
# The header outgoing replies carry; a message with it is our own mail.
LOOP_HEADER = "X-Switchboard-Loop"
MAX_FILENAME = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
)
# The leading level of an X-Priority header such as "1 (Highest)".
X_PRIORITY = re.compile(r"\s*([1-5])\b")
SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template"})


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class ParsedMessage:
    message_id: str
    dedupe_key: str
    from_name: str
    from_address: str
    to_address: str
    subject: str
    sent_at: dt.datetime
    in_reply_to: list[str]
    references: list[str]
    # Plain text of the body, derived from the HTML for HTML-only mail.
    text: str
    # The sanitised-to-be HTML of an HTML-only body, else "".
    html: str
    attachments: list[Attachment] = field(default_factory=list)
    # Why the message is automatic mail ("auto-reply", "bounce", "bulk",
    # "loop"), or "" for mail a person wrote.
    automatic: str = ""
    automatic_detail: str = ""
    # Message-IDs that a bounce names as the mail it returns.
    bounced_ids: list[str] = field(default_factory=list)
    size: int = 0
    # The ticket priority the sender's priority headers ask for ("urgent" or
    # "high"), or "" when they ask for none.
    priority: str = ""


def header(message: Message, name: str) -> str:
    """Return a header's decoded text, or "" when it is missing or unreadable.

    RFC 2047 encoded words are decoded by ``policy.default``. A header that
    the policy cannot parse falls back to its raw text.
    """
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        raw = message.get_all(name, failobj=[])
        value = raw[0] if raw else None
    if value is None:
        return ""
    return " ".join(str(value).split())


def message_ids(text: str) -> list[str]:
    """Return the ``<id>`` values of an In-Reply-To or References header, in order."""
    seen: list[str] = []
    for found in MESSAGE_ID.findall(text):
        if found not in seen:
            seen.append(found)
    return seen


def parse_date(message: Message, received_at: dt.datetime) -> dt.datetime:
    """Return the Date header as an aware time, or ``received_at`` if it is invalid."""
    try:
        value = message.get("date")
        parsed = getattr(value, "datetime", None)
    except (ValueError, IndexError, TypeError, AttributeError):
        parsed = None
    if not isinstance(parsed, dt.datetime):
        return received_at
    if parsed.tzinfo is None:
        # RFC 5322 "-0000": the time is UTC with no local zone known.
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def part_text(part: Message) -> str:
    """Decode a text part in its declared charset, whatever that is.

    An unknown or wrong charset falls back to UTF-8, then Latin-1, with
    undecodable bytes replaced rather than the message rejected.
    """
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content
    except (LookupError, ValueError, UnicodeError, AssertionError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1", errors="replace")


class TextExtractor(HTMLParser):
    """Collect the visible text of HTML, one line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS and self.skipping:
            self.skipping -= 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Return the text of an HTML body, with blocks on their own lines."""
    extractor = TextExtractor()
    extractor.feed(markup)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def text_to_html(text: str) -> str:
    """Escape plain text for the comment sanitiser, which keeps its paragraphs."""
    return html.escape(text, quote=False)


def safe_filename(raw: str | None, index: int, content_type: str) -> str:
    """Return a file name without folders, control characters or excess length."""
    name = raw or ""
    if any("\udc80" <= character <= "\udcff" for character in name):
        # Raw 8-bit bytes in a header come back as surrogate escapes.
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = CONTROL.sub("", name).strip().strip(".")
    if not name:
        extension = ".eml" if content_type == "message/rfc822" else ".bin"
        name = f"attachment-{index}{extension}"
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and len(extension) <= 16:
            name = stem[: MAX_FILENAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME]
    return name


def attachment_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return bytes(inner[0].as_bytes(policy=policy.SMTP))
        return bytes(part.as_bytes(policy=policy.SMTP))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def find_body(message: EmailMessage) -> tuple[str, str]:
    """Return the plain text and, for HTML-only mail, the HTML of the body."""
    try:
        plain = message.get_body(preferencelist=("plain",))
        rich = message.get_body(preferencelist=("html",))
    except (KeyError, ValueError, TypeError):
        plain = rich = None
    if plain is not None:
        return part_text(plain).replace("\r\n", "\n").strip(), ""
    if rich is not None:
        markup = part_text(rich)
        return html_to_text(markup), markup
    if not message.is_multipart() and message.get_content_maintype() == "text":
        return part_text(message).replace("\r\n", "\n").strip(), ""
    return "", ""


def find_attachments(message: EmailMessage) -> list[Attachment]:
    attachments: list[Attachment] = []
    try:
        parts = list(message.iter_attachments())
    except (KeyError, ValueError, TypeError):
        parts = []
    for index, part in enumerate(parts, start=1):
        content_type = part.get_content_type()
        try:
            raw_name = part.get_filename()
        except (ValueError, IndexError, TypeError):
            raw_name = None
        if raw_name is None and content_type == "message/rfc822":
            raw_name = str(part.get_param("name") or "") or None
        attachments.append(
            Attachment(
                filename=safe_filename(raw_name, index, content_type),
                content_type=content_type[:255],
                content=attachment_bytes(part),
            )
        )
    return attachments


def automatic_kind(
    message: EmailMessage, from_address: str, envelope_from: str | None, domain: str
) -> tuple[str, str]:
    """Tell whether a message is automatic mail, and why: (kind, detail).

    Bounces are multipart/report, come from a mailer daemon or have an empty
    return path. Auto-replies set Auto-Submitted or X-Autoreply, bulk mail a
    Precedence of bulk, junk or list. A loop is our own mail coming back:
    it carries our loop header, or its own Message-ID is in our domain.
    """
    auto_submitted = header(message, "Auto-Submitted").lower()
    precedence = header(message, "Precedence").lower()
    sender_local = from_address.partition("@")[0].lower()
    return_path = message.get_all("Return-Path", failobj=[])
    own_id = message_ids(header(message, "Message-ID"))

    if header(message, LOOP_HEADER):
        return "loop", f"{LOOP_HEADER}: {header(message, LOOP_HEADER)}"
    if own_id and own_id[0].lower().endswith("@" + domain):
        return "loop", f"Message-ID <{own_id[0]}> is one of ours"
    if message.get_content_type() == "multipart/report":
        return "bounce", "Content-Type multipart/report"
    if sender_local in BOUNCE_SENDERS:
        return "bounce", f"sender {from_address}"
    if envelope_from == "" or any(
        str(value).strip() in ("", "<>") for value in return_path
    ):
        return "bounce", "empty return path"
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return "auto-reply", f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if header(message, name):
            return "auto-reply", f"{name}: {header(message, name)}"
    if precedence in AUTOMATIC_PRECEDENCE:
        return "bulk", f"Precedence: {precedence}"
    return "", ""


def bounced_message_ids(message: EmailMessage) -> list[str]:
    """Return the Message-IDs of the returned mail that a bounce quotes."""
    found: list[str] = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "text/rfc822-headers":
            text = part_text(part)
            headers = BytesParser(policy=policy.default).parsebytes(
                text.encode("utf-8", "replace"), headersonly=True
            )
            found.extend(message_ids(header(headers, "Message-ID")))
        elif content_type == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.extend(message_ids(header(inner[0], "Message-ID")))
    found.extend(message_ids(header(message, "In-Reply-To")))
    found.extend(message_ids(header(message, "References")))
    return list(dict.fromkeys(found))


def header_priority(message: Message) -> str:
    """Return "urgent" or "high" from the sender's priority headers, else "".

    ``Priority: urgent`` (RFC 2156) and ``X-Priority: 1`` (Highest, as mail
    clients send it) map to urgent; ``X-Priority: 2`` and ``Importance:
    high`` (RFC 2156) map to high. The highest of them wins.
    """
    found: set[str] = set()
    if header(message, "Priority").lower() == "urgent":
        found.add("urgent")
    digits = X_PRIORITY.match(header(message, "X-Priority"))
    if digits is not None:
        level = int(digits.group(1))
        if level == 1:
            found.add("urgent")
        elif level == 2:
            found.add("high")
    if header(message, "Importance").lower() == "high":
        found.add("high")
    for priority in ("urgent", "high"):
        if priority in found:
            return priority
    return ""


def body_digest(raw: bytes) -> str:
    """Return the SHA-256 of the body, after the header block.

    Relays add Received headers, so the body is what stays the same
    between two deliveries of one message. Line endings are compared as
    LF and trailing blank lines are dropped, because SMTP sends CRLF and
    an HTTP client may send the file as it is on disk.
    """
    text = raw.replace(b"\r\n", b"\n")
    index = text.find(b"\n\n")
    body = text[index + 2 :].rstrip(b"\n") if index >= 0 else b""
    return hashlib.sha256(body).hexdigest()


def parse_message(
    raw: bytes,
    received_at: dt.datetime,
    domain: str,
    envelope_from: str | None = None,
) -> ParsedMessage:
    """Parse a raw message.

    Headers and parts that cannot be read give empty or fallback values
    (the receive time for a bad Date), so malformed mail is still filed.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    from_name, from_address = parseaddr(header(message, "From"))
    from_address = from_address.strip().lower()
    if "@" not in from_address:
        from_address = ""
    own_ids = message_ids(header(message, "Message-ID"))
    body = body_digest(raw)
    if own_ids:
        message_id = own_ids[0][:900]
    else:
        # Without a Message-ID the body and sender stand in for it.
        message_id = (
            "no-id-"
            + hashlib.sha256(
                f"{from_address}\n{header(message, 'Subject')}\n{body}".encode()
            ).hexdigest()
        )
    dedupe_key = hashlib.sha256(f"{message_id}\n{body}".encode()).hexdigest()
    text, markup = find_body(message)
    kind, detail = automatic_kind(message, from_address, envelope_from, domain)
    recipients = getaddresses([header(message, "To"), header(message, "Cc")])
    return ParsedMessage(
        message_id=message_id,
        dedupe_key=dedupe_key,
        from_name=" ".join(from_name.split()),
        from_address=from_address,
        to_address=", ".join(address for _, address in recipients if address),
        subject=header(message, "Subject"),
        sent_at=parse_date(message, received_at),
        in_reply_to=message_ids(header(message, "In-Reply-To")),
        references=message_ids(header(message, "References")),
        text=text,
        html=markup,
        attachments=find_attachments(message),
        automatic=kind,
        automatic_detail=detail,
        bounced_ids=bounced_message_ids(message) if kind == "bounce" else [],
        size=len(raw),
        priority=header_priority(message),
    )
