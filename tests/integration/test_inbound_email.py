"""Inbound mail to tickets, over the HTTP endpoint and the SMTP receiver.

Every shared ``.eml`` file of the public datasets goes through both
transports and must give its expected outcome. The web server runs as a
real process; the SMTP receiver runs in the test's event loop on a
loopback port, with the same settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

from app.accounts.tables import Account
from app.campaigns.sending import build_campaign_message
from app.config import Settings
from app.email.attachments import content_path
from app.email.inbound import MessageTooLarge, clean_text, receive_message
from app.email.parsing import LOOP_HEADER, html_to_text, parse_message, text_to_html
from app.email.settings import EmailSettings
from app.email.smtp import start_smtp_server
from app.email.tables import EmailMessage as EmailMessageRow
from app.mail import WIRE_POLICY
from app.merge import Edit
from app.sanitize import clean_rich_text
from app.tickets.service import update_ticket
from app.tickets.tables import Ticket
from app.webhooks.delivery import send_mail as send_outbox_mail
from app.workflows.service import save_rule, set_enabled
from tests.browserless import Session
from tests.conftest import datasets_dir
from tests.factories import make_team, make_ticket, make_user, unique
from tests.servers import ROOT, free_port, stop, web_server
from workers.mail import send_mail

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

DOMAIN = "switchboard.test"
TOKEN = "inbound-" + uuid.uuid4().hex
MAX_MESSAGE = 256 * 1024
RULE_NOTE = "Email received rule ran"
# Message-IDs that one dataset file replies to and another returns as a
# bounce. The tests record them as messages Switchboard sent.
REPLIED_TO = "348F04F142D69C21-291E56D292BC@xxxx.net"
BOUNCED = "200712232303.lBNN3jDq002941@mail12.rrrr.com.au"


@dataclass(frozen=True)
class Expected:
    """The outcome one dataset file must give.

    ``outcome`` is created, threaded, ignored or bounce. ``text`` must be in
    the comment the message adds, besides the whole body compared in
    ``check_ticket``. ``account`` is the key of the seeded account that the
    sender's domain links, if any.
    """

    outcome: str
    subject: str = ""
    text: str = ""
    attachments: tuple[str, ...] = ()
    reason: str = ""
    account: str | None = None
    # The Date header cannot be read, so the receive time replaces it.
    bad_date: bool = False


EXPECTED = {
    "attachment_emails__attachment_message_rfc822.eml": Expected(
        "created",
        "testing",
        "This is the first part.",
        ("ForwardedMessage.eml",),
        account="example",
    ),
    "attachment_emails__attachment_nonascii_filename.eml": Expected(
        "created",
        "testing",
        "This is the first part.",
        ("ciële.txt",),
        account="example",
    ),
    "attachment_emails__attachment_pdf.eml": Expected(
        "created",
        "Another PDF with 🎉 Unicode chars in it 🍿",
        "Just attaching another PDF, here, to see what the message looks like,",
        ("broken.pdf",),
        account="website",
    ),
    "error_emails__bad_date_header.eml": Expected(
        "ignored", reason="bulk: Precedence: junk"
    ),
    "mime_emails__raw_email2.eml": Expected(
        "created",
        "Fwd: Signed email causes file attachments",
        "We should not include these files or vcards as attachments.",
        ("smime.p7s",),
    ),
    "multi_charset__japanese_attachment.eml": Expected(
        "created", "testing", "Rails, RSpec and Life blog", ("てすと.txt",)
    ),
    "multipart_report_emails__report_530.eml": Expected(
        "bounce", reason="bounce: Content-Type multipart/report"
    ),
    "plain_emails__raw_email_reply.eml": Expected("threaded", text="Message body"),
    "rfc2822__example09.eml": Expected(
        "created",
        "Saying Hello",
        "This is a message just to say hello.",
        account="domain",
    ),
}

# Messages written for these tests, for cases that the datasets lack.
OWN_FIXTURE_DIR = Path(__file__).parents[1] / "emails"
OWN_FIXTURES = {
    "broken_date.eml": Expected(
        "created",
        "Tracking page shows the wrong depot",
        "shipment LF-20931",
        bad_date=True,
    ),
    "html_only.eml": Expected(
        "created", "Invoice 4471 was charged twice", "<b>twice</b>"
    ),
    "windows_1251.eml": Expected(
        "created",
        "Счёт не пришёл",
        "Мы до сих пор не получили счёт за ноябрь.",
        ("dogovor.txt",),
    ),
}


@dataclass
class World:
    settings: EmailSettings
    url: str
    smtp_port: int
    reply_ticket: int
    bounce_ticket: int
    accounts: dict[str, int]
    rule_id: int


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("email-data")


@pytest.fixture(scope="module")
def server(data_dir: Path):
    env = {
        "CRM_DATA_DIR": str(data_dir),
        "EMAIL_DOMAIN": DOMAIN,
        "INBOUND_EMAIL_TOKEN": TOKEN,
        "EMAIL_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
    }
    with web_server(env=env) as running:
        yield running


async def seed_sent_message(ticket_id: int, message_id: str) -> None:
    """Record ``message_id`` as a reply Switchboard sent on ``ticket_id``."""
    await EmailMessageRow.raw(
        "INSERT INTO email_message (direction, ticket, message_id, dedupe_key, "
        "status, subject) VALUES ('out', {}, {}, {}, 'sent', 'seeded')",
        ticket_id,
        message_id,
        uuid.uuid4().hex,
    )


async def make_account(**values: Any) -> int:
    rows = await Account.insert(Account(name=unique("Account"), **values)).returning(
        Account.id
    )
    return rows[0]["id"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(server, data_dir: Path) -> AsyncIterator[World]:
    settings = EmailSettings.from_env(
        {
            "CRM_DATA_DIR": str(data_dir),
            "EMAIL_DOMAIN": DOMAIN,
            "EMAIL_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
        }
    )
    await EmailMessageRow.raw(
        "DELETE FROM email_message WHERE message_id = ANY({})", [REPLIED_TO, BOUNCED]
    )
    reply_ticket = await make_ticket("pending", subject=unique("Replied"))
    await seed_sent_message(reply_ticket, REPLIED_TO)
    bounce_ticket = await make_ticket("open", subject=unique("Bounced"))
    await seed_sent_message(bounce_ticket, BOUNCED)
    accounts = {
        "example": await make_account(domain="example.com"),
        "website": await make_account(website="https://www.xxxx.com/contact"),
        "domain": await make_account(domain="machine.example"),
        # A free-mail domain links no account, even one that claims it.
        "free": await make_account(domain="gmail.com"),
    }
    rule_id = await save_rule(
        None,
        "ticket",
        unique("Email rule"),
        {
            "trigger": {"kind": "email.received"},
            "actions": [{"kind": "add_note", "body": RULE_NOTE}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    port = free_port()
    smtp = await start_smtp_server("127.0.0.1", port, settings)
    try:
        yield World(
            settings,
            server.url,
            port,
            reply_ticket,
            bounce_ticket,
            accounts,
            rule_id,
        )
    finally:
        smtp.close()
        await smtp.wait_closed()
        # Other modules' tickets must not run this rule.
        await set_enabled(rule_id, False, None)


async def post_message(world: World, raw: bytes, token: str = TOKEN) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        return await client.post(
            "/api/v1/inbound/email",
            content=raw,
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "message/rfc822",
            },
        )


async def deliver_http(world: World, raw: bytes) -> dict[str, Any]:
    response = await post_message(world, raw)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def smtp_send(world: World, raw: bytes, mail_from: str) -> None:
    """Send a raw message; an empty ``mail_from`` is the null return path."""
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.smtp_port, start_tls=False, timeout=30
    ) as client:
        await client.sendmail(mail_from, [f"support@{DOMAIN}"], raw)


async def deliver_smtp(world: World, raw: bytes, mail_from: str) -> dict[str, Any]:
    """Send over SMTP and read the outcome from the row of its Message-ID.

    A repeated delivery adds no row, so the row found is the first one.
    """
    await smtp_send(world, raw, mail_from)
    message_id = parse_message(raw, dt.datetime.now(dt.UTC), DOMAIN).message_id
    rows = await EmailMessageRow.raw(
        "SELECT id, outcome, reason, ticket, comment FROM email_message "
        "WHERE direction = 'in' AND message_id = {} ORDER BY id LIMIT 1",
        message_id,
    )
    assert rows, f"no inbound row with Message-ID {message_id}"
    row = rows[0]
    return {
        "outcome": row["outcome"],
        "reason": row["reason"],
        "ticket_id": row["ticket"],
        "comment_id": row["comment"],
        "row_id": row["id"],
    }


async def deliver(world: World, transport: str, raw: bytes, mail_from: str) -> Any:
    if transport == "http":
        return await deliver_http(world, raw)
    return await deliver_smtp(world, raw, mail_from)


def dataset_files() -> list[Path]:
    folder = datasets_dir("emails")
    return sorted(folder.glob("*.eml"))


async def forget(raw_message_ids: list[str]) -> None:
    """Remove earlier deliveries, so that each case starts as a new message."""
    await EmailMessageRow.raw(
        "DELETE FROM email_message WHERE direction = 'in' AND message_id = ANY({})",
        raw_message_ids,
    )


async def ticket_row(ticket_id: int) -> dict[str, Any]:
    rows = await Ticket.raw(
        "SELECT t.subject, t.status, t.channel, t.account, c.email AS requester_email "
        "FROM ticket t LEFT JOIN contact c ON c.id = t.requester WHERE t.id = {}",
        ticket_id,
    )
    return rows[0]


async def comment_row(comment_id: int) -> dict[str, Any]:
    rows = await Ticket.raw(
        "SELECT body, author, internal, ticket FROM comment WHERE id = {}", comment_id
    )
    return rows[0]


async def stored_attachments(ticket_id: int, comment_id: int) -> list[dict[str, Any]]:
    return await Ticket.raw(
        "SELECT a.filename, a.sha256, a.size, a.stored FROM email_attachment a "
        "JOIN email_message m ON m.id = a.message "
        "WHERE a.ticket = {} AND m.comment = {} ORDER BY a.id",
        ticket_id,
        comment_id,
    )


async def rule_notes(ticket_id: int) -> int:
    rows = await Ticket.raw(
        "SELECT count(*) AS notes FROM comment WHERE ticket = {} AND body LIKE {}",
        ticket_id,
        f"%{RULE_NOTE}%",
    )
    return int(rows[0]["notes"])


def file_ids(path: Path) -> list[str]:
    parsed = parse_message(path.read_bytes(), dt.datetime.now(dt.UTC), DOMAIN)
    return [parsed.message_id]


def envelope_sender(path: Path) -> str:
    # A bounce comes with the null return path, as mail servers send it.
    return "" if "report" in path.name else "sender@example.org"


async def test_dataset_files_have_expectations() -> None:
    names = {path.name for path in dataset_files()}

    assert sorted(names - EXPECTED.keys()) == []


@pytest.mark.parametrize("transport", ["http", "smtp"])
async def test_dataset_messages(world: World, transport: str) -> None:
    checked = 0
    for path in dataset_files():
        expected = EXPECTED.get(path.name)
        if expected is None:
            continue
        await check_file(world, transport, path, expected)
        checked += 1

    assert checked == len(EXPECTED)


@pytest.mark.parametrize("transport", ["http", "smtp"])
async def test_own_fixture_messages(world: World, transport: str) -> None:
    for name, expected in OWN_FIXTURES.items():
        await check_file(world, transport, OWN_FIXTURE_DIR / name, expected)


async def check_file(
    world: World, transport: str, path: Path, expected: Expected
) -> None:
    where = f"{path.name} over {transport}"
    await forget(file_ids(path))
    if expected.outcome == "threaded":
        await set_status(world.reply_ticket, "pending")
    raw = await asyncio.to_thread(path.read_bytes)

    result = await deliver(world, transport, raw, envelope_sender(path))

    assert result["outcome"] == expected.outcome, where
    if expected.reason:
        assert result["reason"] == expected.reason, where
    if expected.outcome == "ignored":
        assert result["ticket_id"] is None, where
        assert result["comment_id"] is None, where
    elif expected.outcome == "bounce":
        assert result["ticket_id"] == world.bounce_ticket, where
        assert result["comment_id"] is None, where
        status = await EmailMessageRow.raw(
            "SELECT status FROM email_message WHERE message_id = {}", BOUNCED
        )
        assert status[0]["status"] == "bounced", where
    else:
        await check_ticket(world, result, expected, where)
        await check_body(raw, result, where)
        await check_attachment_bytes(world, raw, result, where)
    if expected.bad_date:
        rows = await EmailMessageRow.raw(
            "SELECT sent_at, created_at FROM email_message WHERE message_id = {} "
            "AND direction = 'in'",
            file_ids(path)[0],
        )
        gap = rows[0]["sent_at"] - rows[0]["created_at"]
        assert abs(gap.total_seconds()) < 60, where


def source_body(raw: bytes) -> tuple[str, str]:
    """Return the text and the comment HTML expected for a raw message.

    The standard library's ``policy.default`` parser reads the body. It then
    goes through the same sanitising as inbound mail, and is stripped and
    sanitised once more as ``add_comment`` stores every comment.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain", "html"))
    assert part is not None
    content = part.get_content()
    if part.get_content_subtype() == "html":
        text = clean_text(html_to_text(content))
        markup = clean_rich_text(content)
    else:
        text = clean_text(content.replace("\r\n", "\n").strip())
        markup = text_to_html(text)
    return text, clean_rich_text(markup.strip())


async def check_body(raw: bytes, result: dict[str, Any], where: str) -> None:
    text, markup = source_body(raw)
    stored = await EmailMessageRow.raw(
        "SELECT body_text FROM email_message WHERE comment = {}", result["comment_id"]
    )
    comment = await comment_row(result["comment_id"])

    assert stored[0]["body_text"] == text, where
    assert comment["body"] == markup, where


def source_attachments(raw: bytes) -> dict[str, bytes]:
    """Return each attachment's decoded bytes in the source, by file name.

    An attached message is kept as the message itself, in SMTP line endings.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    found: dict[str, bytes] = {}
    for part in message.iter_attachments():
        name = part.get_filename() or str(part.get_param("name") or "")
        if part.get_content_type() == "message/rfc822":
            inner = part.get_content()
            found[name] = inner.as_bytes(policy=policy.SMTP)
        else:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes), name
            found[name] = payload
    return found


async def check_attachment_bytes(
    world: World, raw: bytes, result: dict[str, Any], where: str
) -> None:
    expected = source_attachments(raw)
    stored = await stored_attachments(result["ticket_id"], result["comment_id"])
    for row in stored:
        content = content_path(world.settings.attachment_dir, row["sha256"])
        assert row["filename"] in expected, where
        assert content.read_bytes() == expected[row["filename"]], (
            f"{where}: {row['filename']}"
        )


async def check_ticket(
    world: World, result: dict[str, Any], expected: Expected, where: str
) -> None:
    ticket_id = result["ticket_id"]
    comment = await comment_row(result["comment_id"])
    ticket = await ticket_row(ticket_id)
    assert comment["ticket"] == ticket_id, where
    assert comment["author"] is None, where
    assert comment["internal"] is False, where
    assert expected.text in comment["body"], where
    assert await rule_notes(ticket_id) >= 1, where
    if expected.outcome == "threaded":
        assert ticket_id == world.reply_ticket, where
        assert ticket["status"] == "open", where
        return
    assert ticket["subject"] == expected.subject, where
    assert ticket["channel"] == "email", where
    assert ticket["status"] == "new", where
    assert ticket["requester_email"], where
    expected_account = world.accounts[expected.account] if expected.account else None
    assert ticket["account"] == expected_account, where
    attachments = await stored_attachments(ticket_id, result["comment_id"])
    assert [row["filename"] for row in attachments] == list(expected.attachments), where
    for row in attachments:
        assert row["stored"] is True, where
        content = content_path(world.settings.attachment_dir, row["sha256"])
        data = content.read_bytes()
        assert len(data) == row["size"], where
        assert hashlib.sha256(data).hexdigest() == row["sha256"], where


async def set_status(ticket_id: int, status: str) -> None:
    rows = await Ticket.raw("SELECT status FROM ticket WHERE id = {}", ticket_id)
    current = rows[0]["status"]
    if current != status:
        await update_ticket(ticket_id, {"status": Edit(base=current, new=status)}, None)


async def test_duplicate_delivery_changes_nothing(world: World) -> None:
    path = datasets_dir("emails") / "attachment_emails__attachment_pdf.eml"
    await forget(file_ids(path))
    raw = path.read_bytes()

    first = await deliver_http(world, raw)
    again_http = await deliver_http(world, raw)
    again_smtp = await deliver_smtp(world, raw, "sender@example.org")
    comments = await Ticket.raw(
        "SELECT count(*) AS comments FROM comment WHERE ticket = {} AND author IS NULL "
        "AND NOT internal",
        first["ticket_id"],
    )

    assert first["outcome"] == "created"
    assert again_http["outcome"] == "duplicate"
    assert again_http["ticket_id"] == first["ticket_id"]
    assert again_http["comment_id"] == first["comment_id"]
    # The SMTP delivery added no row, so its Message-ID finds the first one.
    assert again_smtp["ticket_id"] == first["ticket_id"]
    assert again_smtp["comment_id"] == first["comment_id"]
    assert comments[0]["comments"] == 1


def build_message(
    subject: str = "Help needed",
    sender: str | None = None,
    text: str = "Please help.",
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = (
        sender or f"Casey Customer <casey-{uuid.uuid4().hex[:8]}@acme.test>"
    )
    message["To"] = f"support@{DOMAIN}"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="acme.test")
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return message


AUTOMATIC_CASES = {
    "auto-submitted": ({"Auto_Submitted": "auto-replied"}, "ignored", "auto-reply"),
    "x-autoreply": ({"X_Autoreply": "yes"}, "ignored", "auto-reply"),
    "precedence bulk": ({"Precedence": "bulk"}, "ignored", "bulk"),
    "precedence list": ({"Precedence": "list"}, "ignored", "bulk"),
    "empty return path": ({"Return_Path": "<>"}, "bounce", "bounce"),
    "loop header": ({"X_Switchboard_Loop": DOMAIN}, "ignored", "loop"),
}


async def test_automatic_mail_opens_no_ticket(world: World) -> None:
    tickets_before = await Ticket.count()
    for case, (headers, outcome, reason) in AUTOMATIC_CASES.items():
        message = build_message(**headers)

        result = await receive_message(message.as_bytes(), world.settings)

        assert result.outcome == outcome, case
        assert result.reason.startswith(reason), case
        assert result.ticket_id is None, case
        assert result.comment_id is None, case

    assert await Ticket.count() == tickets_before


async def test_mailer_daemon_and_own_mail_ignored(world: World) -> None:
    daemon = build_message(sender="Mail Delivery System <MAILER-DAEMON@mx.acme.test>")
    own = build_message()
    own.replace_header("Message-ID", f"<{uuid.uuid4().hex}@{DOMAIN}>")

    from_daemon = await receive_message(daemon.as_bytes(), world.settings)
    from_us = await receive_message(own.as_bytes(), world.settings)
    null_sender = await receive_message(
        build_message().as_bytes(), world.settings, envelope_from=""
    )

    assert from_daemon.outcome == "bounce"
    assert from_daemon.reason == "bounce: sender mailer-daemon@mx.acme.test"
    assert from_us.outcome == "ignored"
    assert from_us.reason.startswith("loop:")
    assert null_sender.outcome == "bounce"
    assert null_sender.reason == "bounce: empty return path"


async def test_auto_reply_to_ticket_changes_nothing(world: World) -> None:
    ticket_id = await make_ticket("pending", subject=unique("Away"))
    sent_id = f"{uuid.uuid4().hex}@{DOMAIN}"
    await seed_sent_message(ticket_id, sent_id)
    reply = build_message(
        subject="Out of office",
        In_Reply_To=f"<{sent_id}>",
        Auto_Submitted="auto-replied",
    )
    human = build_message(subject="Auto-Submitted: no", Auto_Submitted="no")

    result = await receive_message(reply.as_bytes(), world.settings)
    human_result = await receive_message(human.as_bytes(), world.settings)
    ticket = await ticket_row(ticket_id)

    assert result.outcome == "ignored"
    assert result.ticket_id == ticket_id
    assert result.comment_id is None
    assert ticket["status"] == "pending"
    assert await rule_notes(ticket_id) == 0
    assert human_result.outcome == "created"


async def test_html_only_and_encoded_headers(world: World) -> None:
    message = EmailMessage()
    message["From"] = "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jurgen@bremen.test>"
    message["To"] = f"support@{DOMAIN}"
    message["Subject"] = "=?iso-8859-1?q?Gr=FC=DFe_aus_Bremen?="
    message["Message-ID"] = make_msgid(domain="bremen.test")
    message["Date"] = "not a date at all"
    message.set_content(
        "<html><head><style>p{color:red}</style></head><body>"
        "<p>Hallo <b>Team</b>,</p><script>alert(1)</script>"
        "<p><a href='javascript:alert(1)'>click</a> danke</p></body></html>",
        subtype="html",
        charset="iso-8859-1",
    )

    result = await receive_message(message.as_bytes(), world.settings)
    ticket = await ticket_row(result.ticket_id or 0)
    comment = await comment_row(result.comment_id or 0)
    stored = await EmailMessageRow.raw(
        "SELECT body_text, sent_at, created_at FROM email_message WHERE id = {}",
        result.message_row_id,
    )
    contact = await Ticket.raw(
        "SELECT first_name, last_name FROM contact WHERE email = 'jurgen@bremen.test'"
    )

    assert result.outcome == "created"
    assert ticket["subject"] == "Grüße aus Bremen"
    assert "<b>Team</b>" in comment["body"]
    assert "script" not in comment["body"]
    assert "alert" not in comment["body"]
    assert "javascript" not in comment["body"]
    assert stored[0]["body_text"] == "Hallo Team,\n\nclick danke"
    # The invalid Date header gives way to the receive time.
    assert abs((stored[0]["sent_at"] - stored[0]["created_at"]).total_seconds()) < 60
    assert contact == [{"first_name": "Jürgen", "last_name": "Müller"}]


async def test_subject_tag_needs_known_sender(world: World) -> None:
    first = build_message(subject="Printer jammed")
    opened = await receive_message(first.as_bytes(), world.settings)
    assert opened.ticket_id is not None
    requester = str(first["From"])
    tag = f"[#T-{opened.ticket_id}]"

    follow_up = await receive_message(
        build_message(subject=f"Re: {tag} Printer jammed", sender=requester).as_bytes(),
        world.settings,
    )
    stranger = await receive_message(
        build_message(subject=f"Re: {tag} Printer jammed").as_bytes(), world.settings
    )

    assert follow_up.outcome == "threaded"
    assert follow_up.ticket_id == opened.ticket_id
    assert stranger.outcome == "created"
    assert stranger.ticket_id != opened.ticket_id


async def test_reply_to_closed_ticket_opens_new(world: World) -> None:
    first = build_message(subject="Invoice question")
    opened = await receive_message(first.as_bytes(), world.settings)
    assert opened.ticket_id is not None
    await set_status(opened.ticket_id, "closed")
    answer = build_message(
        subject="Re: Invoice question",
        sender=str(first["From"]),
        In_Reply_To=str(first["Message-ID"]),
    )

    result = await receive_message(answer.as_bytes(), world.settings)
    rows = await Ticket.raw(
        "SELECT description FROM ticket WHERE id = {}", result.ticket_id
    )

    assert result.outcome == "created"
    assert result.ticket_id != opened.ticket_id
    assert rows[0]["description"] == f"Follow-up to #T-{opened.ticket_id}."


async def test_attachment_limits_drop_with_note(world: World) -> None:
    settings = dataclasses.replace(
        world.settings, max_attachment_bytes=1000, max_attachments_bytes=1500
    )
    message = build_message(subject="Three files")
    message.add_attachment(
        b"a" * 800, maintype="application", subtype="octet-stream", filename="small.bin"
    )
    message.add_attachment(
        b"b" * 2000, maintype="application", subtype="octet-stream", filename="big.bin"
    )
    message.add_attachment(
        b"c" * 900, maintype="application", subtype="octet-stream", filename="extra.bin"
    )

    result = await receive_message(message.as_bytes(), settings)
    comment = await comment_row(result.comment_id or 0)
    rows = await stored_attachments(result.ticket_id or 0, result.comment_id or 0)

    assert result.attachments == ["small.bin"]
    assert result.dropped_attachments == ["big.bin", "extra.bin"]
    assert [(row["filename"], row["stored"]) for row in rows] == [
        ("small.bin", True),
        ("big.bin", False),
        ("extra.bin", False),
    ]
    assert (
        "big.bin (2.0 KB) was not kept: larger than the 1000 bytes limit per file"
        in comment["body"]
    )
    assert (
        "extra.bin (900 bytes) was not kept: over the 1.5 KB limit per message"
        in comment["body"]
    )


async def test_oversized_message_rejected(world: World) -> None:
    message = build_message(text="x" * (MAX_MESSAGE + 10))
    raw = message.as_bytes()

    response = await post_message(world, raw)
    with pytest.raises(MessageTooLarge):
        await receive_message(raw, world.settings)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await smtp_send(world, raw, "sender@example.org")

    assert response.status_code == 413
    assert response.json()["field"] == "message"
    assert refused.value.code == 552


async def test_endpoint_rejects_bad_requests(world: World) -> None:
    message = build_message().as_bytes()
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        no_token = await client.post(
            "/api/v1/inbound/email",
            content=message,
            headers={"content-type": "message/rfc822"},
        )
        wrong_type = await client.post(
            "/api/v1/inbound/email",
            content=message,
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "text/html"},
        )
    wrong_token = await post_message(world, message, token="x" * 40)
    empty = await post_message(world, b"")

    assert no_token.status_code == 401
    assert wrong_token.status_code == 401
    assert wrong_type.status_code == 415
    assert empty.status_code == 422
    assert empty.json()["field"] == "message"


async def test_endpoint_accepts_api_key_with_scope(world: World) -> None:
    from app.api.keys import create_key

    user = await make_user("support_lead")
    writer = await create_key(user.id, unique("Inbound"), {"ticket": "write"}, None)
    reader = await create_key(user.id, unique("Reader"), {"ticket": "read"}, None)

    accepted = await post_message(world, build_message().as_bytes(), writer.token)
    refused = await post_message(world, build_message().as_bytes(), reader.token)

    assert accepted.status_code == 201
    assert accepted.json()["outcome"] == "created"
    assert refused.status_code == 403


async def test_attachment_download_follows_ticket_access(world: World) -> None:
    team = await make_team()
    other_team = await make_team()
    message = build_message(subject="With a file")
    message.add_attachment(
        b"<html><script>x</script></html>",
        maintype="text",
        subtype="html",
        filename="page.html",
    )
    result = await receive_message(message.as_bytes(), world.settings)
    assert result.ticket_id is not None
    await Ticket.update({Ticket.team: team}).where(Ticket.id == result.ticket_id)
    rows = await Ticket.raw(
        "SELECT id FROM email_attachment WHERE ticket = {}", result.ticket_id
    )
    attachment_id = rows[0]["id"]
    url = f"/tickets/{result.ticket_id}/attachments/{attachment_id}"
    other_ticket = await make_ticket(team=team)
    insider = await make_user("support_agent", team=team)
    outsider = await make_user("support_agent", team=other_team)
    sessions = {}
    for name, user in (("insider", insider), ("outsider", outsider)):
        session = Session(world.url)
        await session.sign_in(user.email)
        sessions[name] = session

    try:
        allowed = await sessions["insider"].get(url)
        denied = await sessions["outsider"].get(url)
        wrong_ticket = await sessions["insider"].get(
            f"/tickets/{other_ticket}/attachments/{attachment_id}"
        )
        page = await sessions["insider"].get(f"/tickets/{result.ticket_id}")
    finally:
        for session in sessions.values():
            await session.close()

    assert allowed.status_code == 200
    assert allowed.content == b"<html><script>x</script></html>"
    assert allowed.headers["content-disposition"].startswith("attachment")
    assert "page.html" in allowed.headers["content-disposition"]
    assert allowed.headers["x-content-type-options"] == "nosniff"
    assert allowed.headers["content-type"] == "application/octet-stream"
    assert denied.status_code == 404
    assert wrong_ticket.status_code == 404
    assert page.status_code == 200
    assert url in page.text


async def test_ticket_page_lists_email_by_page(world: World) -> None:
    ticket_id = await make_ticket("open", subject=unique("Busy"))
    for _ in range(21):
        await seed_sent_message(ticket_id, f"{uuid.uuid4().hex}@{DOMAIN}")
    admin = await make_user("admin")
    session = Session(world.url)
    await session.sign_in(admin.email)
    try:
        first = await session.get(f"/tickets/{ticket_id}")
        second = await session.get(f"/tickets/{ticket_id}?email_page=2")
        invalid = await session.get(f"/tickets/{ticket_id}?email_page=0")
    finally:
        await session.close()

    assert first.status_code == 200
    assert "1\u201320 of 21" in first.text
    assert "email_page=2" in first.text
    assert second.status_code == 200
    assert "21\u201321 of 21" in second.text
    assert invalid.status_code == 400


@pytest.fixture(scope="module")
def smtp_command(data_dir: Path) -> Iterator[int]:
    """Run ``crm smtp`` on a free port until the module ends; yield the port."""
    port = free_port()
    env = {**os.environ, "CRM_DATA_DIR": str(data_dir), "EMAIL_DOMAIN": DOMAIN}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "smtp", "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "crm smtp exited before listening"
            assert time.monotonic() < deadline, "crm smtp did not listen in 30 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        stop(process)


async def test_smtp_command_files_mail(world: World, smtp_command: int) -> None:
    message = build_message(subject="Sent to crm smtp")

    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=smtp_command, start_tls=False, timeout=30
    ) as client:
        _, reply = await client.send_message(message)
    rows = await EmailMessageRow.raw(
        "SELECT outcome, ticket FROM email_message WHERE message_id = {}",
        str(message["Message-ID"]).strip("<>"),
    )

    assert reply.startswith("2.0.0 Message created ticket ")
    assert rows[0]["outcome"] == "created"
    assert reply.endswith(str(rows[0]["ticket"]))


def campaign_mail(settings: Settings) -> bytes:
    campaign = {"id": 1, "name": "Spring", "subject": "News", "body": "Hello"}
    recipient = {
        "id": 1,
        "name": "Casey Customer",
        "email": "casey@acme.test",
        "fields": {},
        "message_id": f"<campaign-1-{uuid.uuid4().hex}@{DOMAIN}>",
    }
    message = build_campaign_message(campaign, recipient, settings, DOMAIN)
    return message.as_bytes(policy=WIRE_POLICY)


async def test_own_automatic_mail_returning_is_loop(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMAIL_DOMAIN", DOMAIN)
    monkeypatch.delenv("SMTP_URL", raising=False)
    settings = Settings.from_env()
    # The outbox's mail kind sends workflow send_email actions and the
    # notices of disabled webhook endpoints; the arq job sends password resets.
    await send_outbox_mail(
        {"to": "casey@acme.test", "subject": "Rule mail", "text": "Hello"}
    )
    await send_mail({"settings": settings}, "casey@acme.test", "Reset", "A link")
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    sent = [path.read_bytes() for path in files] + [campaign_mail(settings)]
    tickets_before = await Ticket.count()

    for raw in sent:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        subject = str(message["Subject"])
        assert message["Auto-Submitted"] == "auto-generated", subject
        assert message[LOOP_HEADER] == DOMAIN, subject
        assert str(message["Message-ID"]).endswith(f"@{DOMAIN}>"), subject

        result = await deliver_http(world, raw)

        assert result["outcome"] == "ignored", subject
        assert result["reason"] == f"loop: {LOOP_HEADER}: {DOMAIN}", subject
        assert result["ticket_id"] is None, subject
        assert result["comment_id"] is None, subject

        # A copy whose relay stripped both headers still has our Message-ID.
        del message[LOOP_HEADER]
        del message["Auto-Submitted"]
        await forget([result["message_id"]])
        stripped = await deliver_http(world, message.as_bytes())

        assert stripped["outcome"] == "ignored", subject
        assert stripped["reason"].startswith("loop: Message-ID"), subject
        assert stripped["ticket_id"] is None, subject

    assert await Ticket.count() == tickets_before
