"""Agents' replies by email, through a real worker and an SMTP server on loopback.

The customer's reply is built from the captured reply and fed back to the
SMTP receiver, and must land on the same ticket whether it names it by
In-Reply-To, References or the subject tag alone.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

from app.email.outbound import send_reply
from app.email.settings import EmailSettings
from app.email.smtp import start_smtp_server
from app.email.tables import EmailMessage as EmailMessageRow
from app.email.templates import SAMPLE_CONTEXT, render_template
from app.errors import FieldError
from app.merge import Edit
from app.tickets.service import update_ticket
from app.tickets.tables import Ticket
from tests.browserless import Session
from tests.factories import make_ticket, make_user
from tests.servers import free_port, web_server, worker_process
from tests.smtp_inbox import Inbox, smtp_server
from workers.connection import open_queue
from workers.email import RETRY_DELAY, requeue_unsent_replies

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

DOMAIN = "replies.switchboard.test"
TOKEN = "inbound-" + uuid.uuid4().hex
MAIL_FROM = f"Support <support@{DOMAIN}>"


@dataclass
class World:
    inbox: Inbox
    url: str
    smtp_port: int
    admin: Session


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server.inbox, server.port


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reply-data")


@pytest.fixture(scope="module")
def reply_prefix() -> str:
    return f"{os.environ['REDIS_PREFIX']}reply-{uuid.uuid4().hex[:6]}:"


@pytest.fixture(scope="module")
def server(inbox, data_dir: Path, reply_prefix: str):
    _, port = inbox
    # Its own queue, so that no other test's worker takes these jobs.
    env = {
        "SMTP_URL": f"smtp://127.0.0.1:{port}",
        "MAIL_FROM": MAIL_FROM,
        "EMAIL_DOMAIN": DOMAIN,
        "INBOUND_EMAIL_TOKEN": TOKEN,
        "CRM_DATA_DIR": str(data_dir),
        "REDIS_PREFIX": reply_prefix,
    }
    with web_server(env=env) as running, worker_process(env=env):
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(inbox, server, data_dir: Path) -> AsyncIterator[World]:
    settings = EmailSettings.from_env(
        {"CRM_DATA_DIR": str(data_dir), "EMAIL_DOMAIN": DOMAIN}
    )
    port = free_port()
    smtp = await start_smtp_server("127.0.0.1", port, settings)
    admin = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(admin.email)
    try:
        yield World(inbox[0], server.url, port, session)
    finally:
        await session.close()
        smtp.close()
        await smtp.wait_closed()


def customer_message(address: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Casey Customer <{address}>"
    message["To"] = f"support@{DOMAIN}"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="acme.test")
    message.set_content("My printer prints only blank pages.")
    return message


async def post_inbound(world: World, message: EmailMessage) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        response = await client.post(
            "/api/v1/inbound/email",
            content=message.as_bytes(),
            headers={
                "authorization": f"Bearer {TOKEN}",
                "content-type": "message/rfc822",
            },
        )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def wait_for_mail(inbox: Inbox, address: str, count: int) -> EmailMessage:
    """Poll the inbox, which aiosmtpd fills from its own thread."""
    async with asyncio.timeout(30):
        while len(inbox.to(address)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return inbox.to(address)[count - 1]


async def wait_for_status(row_id: int, status: str, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while True:
            rows = await EmailMessageRow.raw(
                "SELECT status FROM email_message WHERE id = {}", row_id
            )
            if rows[0]["status"] == status:
                return
            await asyncio.sleep(0.1)


async def save_template(world: World, name: str, body: str) -> Any:
    return await world.admin.post(
        "/admin/email-templates", {"name": name, "body": body}, htmx=False
    )


async def test_reply_round_trip(world: World) -> None:
    address = f"casey-{uuid.uuid4().hex[:8]}@acme.test"
    first = customer_message(address, "Blank pages")
    opened = await post_inbound(world, first)
    ticket_id = opened["ticket_id"]
    template_name = f"Greeting {uuid.uuid4().hex[:6]}"
    bad = await save_template(world, template_name, "Hello {{ contact.nickname }}")
    good = await save_template(
        world,
        template_name,
        "Hello {{ contact.first_name }}, about {{ ticket.subject }}: "
        "{{ agent.name }} here.",
    )
    rows = await EmailMessageRow.raw(
        "SELECT id FROM reply_template WHERE name = {}", template_name
    )
    template_id = rows[0]["id"]

    form = await world.admin.get(f"/tickets/{ticket_id}/replies?template={template_id}")
    sent = await world.admin.post(
        f"/tickets/{ticket_id}/replies", {"body": "We are on it.\n\nSecond line."}
    )
    reply = await wait_for_mail(world.inbox, address, 1)
    outgoing = await EmailMessageRow.raw(
        "SELECT id, message_id, comment FROM email_message "
        "WHERE ticket = {} AND direction = 'out'",
        ticket_id,
    )
    await wait_for_status(outgoing[0]["id"], "sent")
    comment = await Ticket.raw(
        "SELECT author, internal, body FROM comment WHERE id = {}",
        outgoing[0]["comment"],
    )

    assert bad.status_code == 422
    assert "contact" in bad.text
    assert "nickname" in bad.text
    assert good.status_code == 200
    assert form.status_code == 200
    assert "Hello Casey, about Blank pages:" in form.text
    assert sent.status_code == 200
    assert "Reply queued" in sent.text
    assert comment[0]["author"] is not None
    assert comment[0]["internal"] is False
    assert reply["Subject"] == f"Re: [#T-{ticket_id}] Blank pages"
    assert reply["Message-ID"] == f"<{outgoing[0]['message_id']}>"
    assert reply["Message-ID"].endswith(f"@{DOMAIN}>")
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in reply["References"]
    assert reply["X-Switchboard-Loop"] == DOMAIN
    assert reply["From"] == MAIL_FROM
    body = reply.get_body(preferencelist=("plain",))
    assert body is not None
    assert "We are on it." in body.get_content()

    await update_ticket(ticket_id, {"status": Edit(base="new", new="pending")}, None)
    answer = EmailMessage()
    answer["From"] = f"Casey Customer <{address}>"
    answer["To"] = str(reply["From"])
    answer["Subject"] = "Re: " + str(reply["Subject"])
    answer["Message-ID"] = make_msgid(domain="acme.test")
    answer["In-Reply-To"] = str(reply["Message-ID"])
    answer["References"] = f"{reply['References']} {reply['Message-ID']}"
    answer.set_content("Thanks, it works now.")
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.smtp_port, start_tls=False, timeout=30
    ) as client:
        await client.send_message(answer)
    threaded = await EmailMessageRow.raw(
        "SELECT outcome, ticket, comment FROM email_message WHERE message_id = {}",
        str(answer["Message-ID"]).strip("<>"),
    )
    ticket = await Ticket.raw("SELECT status FROM ticket WHERE id = {}", ticket_id)
    answer_comment = await comment_row(threaded[0]["comment"])

    assert threaded[0]["outcome"] == "threaded"
    assert threaded[0]["ticket"] == ticket_id
    assert ticket[0]["status"] == "open"
    assert answer_comment["ticket"] == ticket_id
    assert answer_comment["body"] == "<p>Thanks, it works now.</p>"
    assert answer_comment["author"] is None
    assert answer_comment["internal"] is False


async def comment_row(comment_id: int) -> dict[str, Any]:
    rows = await Ticket.raw(
        "SELECT ticket, author, internal, body FROM comment WHERE id = {}",
        comment_id,
    )
    assert rows, f"comment {comment_id} not found"
    return rows[0]


async def send_smtp(world: World, message: EmailMessage) -> None:
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.smtp_port, start_tls=False, timeout=30
    ) as client:
        await client.send_message(message)


async def agent_reply(world: World, subject: str) -> tuple[int, str, EmailMessage]:
    """Open a ticket by mail and send an agent's reply to it; return the
    ticket id, the customer's address and the reply as received."""
    address = f"casey-{uuid.uuid4().hex[:8]}@acme.test"
    opened = await post_inbound(world, customer_message(address, subject))
    ticket_id = opened["ticket_id"]
    sent = await world.admin.post(
        f"/tickets/{ticket_id}/replies", {"body": "Could you send a photo?"}
    )
    assert sent.status_code == 200, sent.text
    reply = await wait_for_mail(world.inbox, address, 1)
    return ticket_id, address, reply


# Each case keeps one way of naming the ticket in the customer's answer.
THREADING_CASES = {
    "in-reply-to": ("In-Reply-To", False),
    "references": ("References", False),
    "subject tag": (None, True),
}


@pytest.mark.parametrize("case", THREADING_CASES)
async def test_answer_threads_by_one_header(world: World, case: str) -> None:
    header, tagged = THREADING_CASES[case]
    ticket_id, address, reply = await agent_reply(world, f"Jammed tray {case}")
    text = f"Here is the photo, threaded by {case}."
    answer = EmailMessage()
    answer["From"] = f"Casey Customer <{address}>"
    answer["To"] = str(reply["From"])
    answer["Subject"] = (
        "Re: " + str(reply["Subject"]) if tagged else f"Re: Jammed tray {case}"
    )
    answer["Message-ID"] = make_msgid(domain="acme.test")
    if header is not None:
        answer[header] = str(reply["Message-ID"])
    answer.set_content(text)

    await send_smtp(world, answer)
    rows = await EmailMessageRow.raw(
        "SELECT outcome, ticket, comment FROM email_message WHERE message_id = {}",
        str(answer["Message-ID"]).strip("<>"),
    )
    comment = await comment_row(rows[0]["comment"])

    if not tagged:
        assert "[#T-" not in str(answer["Subject"]), case
    assert rows[0]["outcome"] == "threaded", case
    assert rows[0]["ticket"] == ticket_id, case
    assert comment["ticket"] == ticket_id, case
    assert comment["body"] == f"<p>{text}</p>", case


async def test_reply_retried_after_smtp_refusal(world: World) -> None:
    address = f"casey-{uuid.uuid4().hex[:8]}@acme.test"
    opened = await post_inbound(world, customer_message(address, "Refused once"))
    ticket_id = opened["ticket_id"]
    world.inbox.refuse_next(address)

    sent = await world.admin.post(
        f"/tickets/{ticket_id}/replies", {"body": "Second time lucky."}
    )
    rows = await EmailMessageRow.raw(
        "SELECT id FROM email_message WHERE ticket = {} AND direction = 'out'",
        ticket_id,
    )
    row_id = rows[0]["id"]
    # The job's second try waits RETRY_DELAY seconds after the first.
    await wait_for_status(row_id, "sent", seconds=RETRY_DELAY + 40)
    mail = await wait_for_mail(world.inbox, address, 1)
    stored = await EmailMessageRow.raw(
        "SELECT status, tries, error, message_id FROM email_message WHERE id = {}",
        row_id,
    )
    refused = [item for item in world.inbox.refused if address in item.recipients]
    delivered = [item for item in world.inbox.messages if address in item.recipients]

    assert sent.status_code == 200
    assert len(refused) == 1
    assert len(delivered) == 1
    assert stored[0]["status"] == "sent"
    assert stored[0]["tries"] == 2
    assert stored[0]["error"] == ""
    # Both tries sent the same message, fixed when the reply was written.
    assert refused[0].message["Message-ID"] == mail["Message-ID"]
    assert mail["Message-ID"] == f"<{stored[0]['message_id']}>"
    assert delivered[0].at - refused[0].at >= RETRY_DELAY - 1


async def test_reply_without_job_is_queued_again(
    world: World, reply_prefix: str
) -> None:
    address = f"casey-{uuid.uuid4().hex[:8]}@acme.test"
    opened = await post_inbound(world, customer_message(address, "Lost job"))
    ticket_id = opened["ticket_id"]
    agent = await make_user("admin")

    async def lose_job(row_id: int) -> None:
        """Stand for a web process that failed to reach the queue."""

    settings = EmailSettings.from_env({"EMAIL_DOMAIN": DOMAIN})
    _, row_id = await send_reply(
        ticket_id, "Sorry for the wait.", agent.id, settings, lose_job
    )
    queue = await open_queue(os.environ["REDIS_URL"], reply_prefix)
    try:
        fresh = await requeue_unsent_replies({"redis": queue})
        await EmailMessageRow.raw(
            "UPDATE email_message SET created_at = now() - interval '2 minutes' "
            "WHERE id = {}",
            row_id,
        )
        stale = await requeue_unsent_replies({"redis": queue})
        again = await requeue_unsent_replies({"redis": queue})
        await wait_for_status(row_id, "sent")
    finally:
        await queue.aclose()

    assert fresh == 0
    assert stale == 1
    # The job is waiting or done, so it is not queued a second time.
    assert again == 0
    mail = await wait_for_mail(world.inbox, address, 1)
    assert "Sorry for the wait." in str(mail.get_body(preferencelist=("plain",)))


async def test_reply_needs_requester_address(world: World) -> None:
    ticket_id = await make_ticket("open")

    response = await world.admin.post(f"/tickets/{ticket_id}/replies", {"body": "Hi"})

    assert response.status_code == 422
    assert "requester has no email address" in response.text


async def test_reply_needs_comment_right(world: World) -> None:
    ticket_id = await make_ticket("open")
    reader = await make_user("read_only")
    session = Session(world.url)
    await session.sign_in(reader.email)
    try:
        response = await session.post(f"/tickets/{ticket_id}/replies", {"body": "Hi"})
    finally:
        await session.close()

    assert response.status_code == 403


async def test_template_errors_name_the_problem() -> None:
    cases = {
        "{{ contact.nickname }}": "nickname",
        "{{ ticket.subject": "unexpected end of template",
        "{{ ''.__class__.__mro__ }}": "unsafe",
    }
    for body, reason in cases.items():
        with pytest.raises(FieldError) as raised:
            render_template(body, SAMPLE_CONTEXT)
        assert raised.value.field == "body", body
        assert reason in raised.value.reason, body
