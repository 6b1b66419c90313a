"""Email campaigns sent by real arq workers to an SMTP server on loopback.

The test's SMTP server (aiosmtpd) records when each message arrives, which
is what the rate checks measure. Unsubscribe links are followed with a
real HTTP client against a real web server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.access.tables import Role
from app.campaigns.segments import parse_segment
from app.campaigns.sending import TEST_HEADER, build_campaign_message
from app.campaigns.service import (
    CampaignInput,
    campaign_stats,
    create_campaign,
    get_campaign,
    influence_totals,
    record_campaign_reply,
    schedule_campaign,
)
from app.campaigns.tables import Campaign, CampaignRecipient, EmailSuppression
from app.campaigns.templates import SAMPLE_CONTEXT, check_templates, render_message
from app.campaigns.tokens import make_token, read_token
from app.config import Settings
from app.contacts.tables import Contact
from app.deals.service import move_deal
from app.email.inbound import receive_message
from app.email.settings import EmailSettings
from app.errors import FieldError
from app.leads.service import convert_lead, create_lead
from app.workflows.jobs import close_queue
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user, unique
from tests.servers import web_server, worker_process
from tests.smtp_inbox import SmtpServer
from tests.smtp_inbox import smtp_server as running_smtp_server

pytestmark = pytest.mark.timeout(180)

UNSUBSCRIBE_LINK = re.compile(r"https?://\S+/unsubscribe/(\S+)")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that lead changes open to queue rescoring."""
    yield
    await close_queue()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def no_campaign_left_sending() -> AsyncIterator[None]:
    """Cancel what a failed test left scheduled or sending, because the next
    test's worker would otherwise send it to that test's SMTP server."""
    yield
    await Campaign.raw(
        "UPDATE campaign SET state = 'cancelled' "
        "WHERE state IN ('scheduled', 'sending')"
    )


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def make_contacts(marker: str, count: int) -> list[dict[str, Any]]:
    """Insert ``count`` contacts whose title contains ``marker``."""
    contacts = []
    for index in range(count):
        address = f"{uuid.uuid4().hex[:10]}@people.example"
        rows = await Contact.insert(
            Contact(
                first_name=f"Pat{index}",
                last_name="Tester",
                email=address,
                title=f"Buyer {marker}",
            )
        ).returning(Contact.id)
        contacts.append({"id": rows[0]["id"], "email": address})
    return contacts


def segment_for(marker: str) -> dict[str, Any]:
    return {
        "type": "group",
        "match": "all",
        "items": [
            {"type": "condition", "field": "title", "op": "contains", "value": marker}
        ],
    }


async def campaign_for(marker: str, rate: int, subject: str = "") -> int:
    user = await make_user("sales_manager")
    return await create_campaign(
        CampaignInput(
            name=unique("Campaign"),
            audience="contact",
            segment=segment_for(marker),
            subject=subject or "News for {{ recipient.first_name }}",
            body="Hello {{ recipient.name }},\n\nOur spring update.\n",
            rate_per_minute=rate,
        ),
        user.id,
    )


async def wait_until_sent(campaign_id: int, seconds: float) -> None:
    async def sent() -> bool:
        return (await get_campaign(campaign_id))["state"] == "sent"

    await wait_for(sent, seconds)


async def recipient_rows(campaign_id: int) -> dict[str, dict[str, Any]]:
    rows = await CampaignRecipient.select().where(
        CampaignRecipient.campaign == campaign_id
    )
    return {row["email"]: row for row in rows}


def campaign_reply(sender: str, replied_to: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "news@campaigns.test"
    message["Subject"] = "Re: News"
    message["Message-ID"] = make_msgid(domain="reader.test")
    message["In-Reply-To"] = replied_to
    message["References"] = replied_to
    message.set_content("Tell me more about the new plan.")
    return message.as_bytes()


def campaign_bounce(recipient: str, bounced_id: str) -> bytes:
    """Return a delivery status report that quotes the bounced message's headers."""
    report = EmailMessage()
    report["From"] = "Mail Delivery System <mailer-daemon@relay.test>"
    report["To"] = "news@campaigns.test"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = make_msgid(domain="relay.test")
    report["Auto-Submitted"] = "auto-replied"
    report.set_content(f"Delivery to {recipient} failed permanently.")
    report.add_attachment(
        f"Message-ID: {bounced_id}\nTo: {recipient}\nSubject: News\n",
        subtype="rfc822-headers",
    )
    report.replace_header(
        "Content-Type", 'multipart/report; report-type="delivery-status"'
    )
    return report.as_bytes()


def mail_to_unsubscribe(sender: str, token: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "news@campaigns.test"
    message["Subject"] = f"unsubscribe {token}"
    message["Message-ID"] = make_msgid(domain="reader.test")
    message.set_content("")
    return message.as_bytes()


async def test_template_errors_name_the_field() -> None:
    base = CampaignInput(name="Bad", segment=segment_for("x"), subject="Hi", body="B")
    cases = [
        ({"body": "Hello {{ recipient.nmae "}, "body"),
        ({"subject": "Hi {% if %}"}, "subject"),
        ({"body": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}, "body"),
        ({"subject": "Line one{{ '\\n' }}line two"}, "subject"),
        ({"subject": "Hello {first_name}"}, "subject"),
        ({"body": "Hi {recipient.first_name}"}, "body"),
        (
            {"body": "{% if recipient.title %}{{ recipient.nickname }}{% endif %}"},
            "body",
        ),
        ({"rate_per_minute": "0"}, "rate_per_minute"),
        ({"rate_per_minute": "fast"}, "rate_per_minute"),
        ({"influence_days": "400"}, "influence_days"),
        ({"name": ""}, "name"),
        ({"audience": "accounts"}, "audience"),
    ]
    for changes, expected_field in cases:
        data = CampaignInput(**{**base.__dict__, **changes})
        with pytest.raises(FieldError) as raised:
            await create_campaign(data, None)
        assert raised.value.field == expected_field, changes


async def test_undefined_placeholder_names_itself() -> None:
    data = CampaignInput(
        name="Typo", segment=segment_for("x"), subject="Hi", body="{{ recipent.name }}"
    )

    with pytest.raises(FieldError) as raised:
        await create_campaign(data, None)

    assert raised.value.field == "body"
    assert raised.value.value == "{{ recipent.name }}"
    assert "{{ recipient.name }}" in raised.value.reason


STRAY_BRACES = [
    ("subject", "Hello {first_name}", "{first_name}", "{{ recipient.first_name }}"),
    ("subject", "Hi {recipient.company}", "{recipient.company}", "recipient.company"),
    ("body", "Hi,\n\nfor {campaign.name}", "{campaign.name}", "{{ campaign.name }}"),
    ("body", "Hi {nickname}", "{nickname}", "{{ recipient.title }}"),
    ("body", "Hi {{ recipient.name }} }", "}", "{{ '}' }}"),
    ("subject", "Hi { there", "{", "{{ '{' }}"),
]


@pytest.mark.parametrize(("field", "text", "value", "advice"), STRAY_BRACES)
async def test_stray_brace_rejected_with_advice(
    field: str, text: str, value: str, advice: str
) -> None:
    name = unique("Braces")
    texts = {"subject": "Hi", "body": "Hello", field: text}
    data = CampaignInput(name=name, segment=segment_for("x"), **texts)

    with pytest.raises(FieldError) as raised:
        await create_campaign(data, None)
    stored = await Campaign.select(Campaign.id).where(Campaign.name == name)

    assert raised.value.field == field
    assert raised.value.value == value
    assert advice in raised.value.reason
    assert "{{ '{' }}" in raised.value.reason
    assert stored == []


def test_stray_brace_names_its_line() -> None:
    with pytest.raises(FieldError) as raised:
        check_templates("Hi", "Hello,\n\nSee {first_name}.")

    assert "on line 3" in raised.value.reason


async def test_literal_braces_saved_and_sent() -> None:
    body = (
        "Code {{ '{' }}x{{ '}' }} and {% raw %}{y}{% endraw %} for {{ recipient.name }}"
    )
    campaign_id = await create_campaign(
        CampaignInput(
            name=unique("Literal"), segment=segment_for("x"), subject="Hi", body=body
        ),
        None,
    )

    campaign = await get_campaign(campaign_id)
    subject, text = render_message(
        campaign, SAMPLE_CONTEXT["recipient"], "https://crm.example.test/u/1"
    )

    assert subject == "Hi"
    assert text.startswith("Code {x} and {y} for Ada Lovelace")


def test_one_click_header_only_over_https() -> None:
    campaign = {"id": 1, "name": "News", "subject": "Hi", "body": "Hello"}
    recipient = {
        "id": 7,
        "name": "Pat Tester",
        "email": "pat@people.example",
        "fields": dict(SAMPLE_CONTEXT["recipient"]),
        "message_id": "<campaign-1-x@campaigns.test>",
    }
    base = Settings.from_env()
    secure = replace(base, public_url="https://crm.example.test")
    plain = replace(base, public_url="http://crm.example.test")

    over_https = build_campaign_message(campaign, recipient, secure, "campaigns.test")
    over_http = build_campaign_message(campaign, recipient, plain, "campaigns.test")

    assert over_https["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert over_https["List-Unsubscribe"].startswith("<https://crm.example.test/")
    assert over_http["List-Unsubscribe-Post"] is None
    assert over_http["List-Unsubscribe"].startswith("<http://crm.example.test/")


def test_segment_errors_name_the_path() -> None:
    unknown_field = {
        "type": "group",
        "items": [{"type": "condition", "field": "salary", "op": "equals", "value": 1}],
    }
    change_operator = {
        "type": "group",
        "items": [{"type": "condition", "field": "title", "op": "changed"}],
    }
    bad_operator = {
        "type": "group",
        "items": [{"type": "condition", "field": "title", "op": "bogus"}],
    }
    empty_value = {
        "type": "group",
        "items": [{"type": "condition", "field": "company", "op": "contains"}],
    }

    with pytest.raises(FieldError) as field_error:
        parse_segment(unknown_field, "contact")
    with pytest.raises(FieldError) as op_error:
        parse_segment(change_operator, "contact")
    with pytest.raises(FieldError) as invalid_error:
        parse_segment(bad_operator, "contact")
    with pytest.raises(FieldError) as value_error:
        parse_segment(empty_value, "lead")

    assert field_error.value.field == "segment.items.0.field"
    assert field_error.value.value == "salary"
    assert op_error.value.field == "segment.items.0.op"
    assert invalid_error.value.field.startswith("segment")
    assert "bogus" in str(invalid_error.value)
    assert value_error.value.field == "segment.items.0.value"


def test_tokens_reject_tampering() -> None:
    token = make_token("secret", 42)

    assert read_token("secret", token) == 42
    assert read_token("other secret", token) is None
    assert read_token("secret", token.replace("42.", "43.", 1)) is None
    assert read_token("secret", "42") is None
    assert read_token("secret", "") is None


async def test_rate_headers_and_suppression(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 22)
    suppressed = {contacts[0]["email"], contacts[1]["email"]}
    for address in suppressed:
        await EmailSuppression.insert(
            EmailSuppression(email=address, reason="unsubscribed")
        )
    campaign_id = await campaign_for(marker, rate=60)
    await schedule_campaign(campaign_id, None, None)
    inbox = smtp_server.inbox

    env = {"SMTP_URL": smtp_server.url, "PUBLIC_URL": "https://crm.example.test"}
    with worker_process(env):
        await wait_until_sent(campaign_id, seconds=90)

    rows = await recipient_rows(campaign_id)
    addresses = inbox.addresses()
    assert len(addresses) == 20
    assert len(set(addresses)) == 20
    assert suppressed.isdisjoint(addresses)
    assert {rows[address]["state"] for address in suppressed} == {"skipped"}

    # 60 per minute: one a second. 19 gaps between 20 messages, each at
    # least 0.8 s and at least 17.1 s in all (10 % under). A loaded machine
    # may send later than the rate allows, never sooner, so the upper bound
    # is only the wait above.
    times = [item.at for item in inbox.messages]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.8, gaps
    assert times[-1] - times[0] >= 17.1, times[-1] - times[0]

    first = inbox.messages[0].message
    address = inbox.messages[0].recipients[0]
    row = rows[address]
    token = make_token(os.environ["SECRET_KEY"], row["id"])
    link = f"https://crm.example.test/unsubscribe/{token}"
    assert first["Message-ID"] == row["message_id"]
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = first["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{link}>, <mailto:")
    # As sent, not only as parsed: no encoded words that clients cannot read.
    assert f"List-Unsubscribe: <{link}>, <mailto:".encode() in inbox.messages[0].raw
    assert token in unsubscribe.split("mailto:")[1]
    assert first["Subject"] == f"News for {row['name'].split()[0]}"
    assert address in first["To"]
    body = first.get_content()
    assert f"Hello {row['name']}," in body
    assert link in body

    stats = await campaign_stats(campaign_id)
    assert stats["sent"] == 20
    assert stats["skipped"] == 2
    assert stats["total"] == 22

    # The reply, the bounce and the mailto unsubscribe arrive as mail.
    second = inbox.messages[1]
    third = inbox.messages[2]
    third_token = make_token(os.environ["SECRET_KEY"], rows[third.recipients[0]]["id"])
    mail_settings = EmailSettings.from_env()
    reply = await receive_message(
        campaign_reply(address, first["Message-ID"]), mail_settings
    )
    bounce = await receive_message(
        campaign_bounce(second.recipients[0], second.message["Message-ID"]),
        mail_settings,
        envelope_from="",
    )
    by_mailto = await receive_message(
        mail_to_unsubscribe(third.recipients[0], third_token), mail_settings
    )
    unknown = await record_campaign_reply("<nobody@nowhere.example>", "reply")
    after = await campaign_stats(campaign_id)
    recipients = await recipient_rows(campaign_id)
    bounce_row = await EmailSuppression.select().where(
        EmailSuppression.email == second.recipients[0]
    )
    # A reply still files as mail does; the other two open nothing.
    assert reply.outcome == "created"
    assert recipients[address]["replied_at"] is not None
    assert bounce.outcome == "bounce"
    assert recipients[second.recipients[0]]["bounced_at"] is not None
    assert by_mailto.outcome == "ignored"
    assert by_mailto.ticket_id is None
    assert by_mailto.reason == "campaign unsubscribe"
    assert unknown is None
    assert after["unsubscribed"] == 1
    assert after["replied"] == 1
    assert after["bounced"] == 1
    assert [item["reason"] for item in bounce_row] == ["bounced"]
    with pytest.raises(FieldError):
        await record_campaign_reply(first["Message-ID"], "opened")  # type: ignore[arg-type]


async def test_unsubscribe_link_over_http(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 2)
    leaving, staying = contacts[0]["email"], contacts[1]["email"]
    inbox = smtp_server.inbox

    with web_server() as server:
        env = {"SMTP_URL": smtp_server.url, "PUBLIC_URL": server.url}
        with worker_process(env):
            first = await campaign_for(marker, rate=600)
            await schedule_campaign(first, None, None)
            await wait_until_sent(first, seconds=60)
            message = next(
                item.message for item in inbox.messages if leaving in item.recipients
            )
            match = UNSUBSCRIBE_LINK.search(message.get_content())
            assert match is not None
            # RFC 8058's one-click POST needs an https link, so none is offered.
            assert message["List-Unsubscribe"].startswith(f"<{server.url}/")
            assert message["List-Unsubscribe-Post"] is None
            link = match.group(0)

            async with httpx.AsyncClient(timeout=10) as client:
                confirm = await client.get(link)
                tampered = await client.get(link[:-3] + "AAA")
                done = await client.post(link, data={"List-Unsubscribe": "One-Click"})
                again = await client.get(link)

            assert confirm.status_code == 200
            assert 'method="post"' in confirm.text
            assert leaving in confirm.text
            assert tampered.status_code == 404
            assert done.status_code == 200
            assert "You are unsubscribed" in done.text
            assert "You are unsubscribed" in again.text

            before = len(inbox.messages)
            second = await campaign_for(marker, rate=600)
            await schedule_campaign(second, None, None)
            await wait_until_sent(second, seconds=60)

    later = [address for item in inbox.messages[before:] for address in item.recipients]
    rows = await recipient_rows(second)
    first_stats = await campaign_stats(first)
    assert later == [staying]
    assert rows[leaving]["state"] == "skipped"
    assert rows[leaving]["reason"] == "unsubscribed"
    assert first_stats["unsubscribed"] == 1


async def test_killed_worker_sends_nobody_twice(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 15)
    campaign_id = await campaign_for(marker, rate=120)
    inbox = smtp_server.inbox
    env = {
        "SMTP_URL": smtp_server.url,
        "CAMPAIGN_STALE_SECONDS": "2",
    }
    await schedule_campaign(campaign_id, None, None)

    with worker_process(env) as first:

        async def some_sent() -> bool:
            return len(inbox.messages) >= 5

        await wait_for(some_sent, seconds=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    received_before_restart = len(inbox.messages)

    with worker_process(env):
        await wait_until_sent(campaign_id, seconds=90)

    rows = await recipient_rows(campaign_id)
    counts = Counter(inbox.addresses())
    interrupted = {
        email for email, row in rows.items() if row["state"] == "interrupted"
    }
    sent = {email for email, row in rows.items() if row["state"] == "sent"}
    assert received_before_restart < len(contacts)
    assert max(counts.values()) == 1
    # The message being delivered when the worker died may or may not have
    # reached the server; either way it is never sent again.
    assert len(interrupted) <= 1
    assert sent <= set(counts)
    assert set(counts) - sent <= interrupted
    assert sent | interrupted == {contact["email"] for contact in contacts}


async def test_influence_counts_deals_after_sending(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 1)
    campaign_id = await campaign_for(marker, rate=600)
    await schedule_campaign(campaign_id, None, None)
    with worker_process({"SMTP_URL": smtp_server.url}):
        await wait_until_sent(campaign_id, seconds=60)
    pipeline = await make_pipeline()
    await make_deal(pipeline, contact=contacts[0]["id"], name=unique("Influenced"))

    totals = await influence_totals(campaign_id)
    campaign = await Campaign.select(Campaign.state).where(Campaign.id == campaign_id)

    assert campaign[0]["state"] == "sent"
    assert totals["deals_created"] == 1
    assert totals["leads_converted"] == 0


async def test_campaign_pages_follow_roles() -> None:
    manager = await make_user("sales_manager")
    rep = await make_user("sales_rep")
    agent = await make_user("support_agent")
    name = unique("Page campaign")
    form = {
        "name": name,
        "audience": "contact",
        "match": "all",
        "condition_field": ["title", ""],
        "condition_op": ["contains", "equals"],
        "condition_value": [uuid.uuid4().hex, ""],
        "subject": "Hello {{ recipient.first_name }}",
        "body": "Hi {{ recipient.name }}",
        "rate_per_minute": "30",
        "influence_days": "14",
    }

    with web_server() as server:
        sessions = {}
        for role, user in (("manager", manager), ("rep", rep), ("agent", agent)):
            sessions[role] = Session(server.url)
            await sessions[role].sign_in(user.email)
        invalid = await sessions["manager"].post(
            "/campaigns/", {**form, "body": "Hi {{ recipient.nmae }"}, htmx=False
        )
        bad_field = await sessions["manager"].post(
            "/campaigns/", {**form, "condition_field": ["salary"]}, htmx=False
        )
        single_brace = await sessions["manager"].post(
            "/campaigns/",
            {
                **form,
                "subject": "Hello {first_name}",
                "body": "Hi {{ recipient.name }}",
            },
            htmx=False,
        )
        created = await sessions["manager"].post("/campaigns/", form, htmx=False)
        location = created.headers.get("location", "")
        detail = await sessions["rep"].get(location)
        listing = await sessions["rep"].get("/campaigns")
        rep_new = await sessions["rep"].get("/campaigns/new")
        agent_list = await sessions["agent"].get("/campaigns")
        rep_cancel = await sessions["rep"].post(f"{location}/cancel", {}, htmx=False)
        bad_time = await sessions["manager"].post(
            f"{location}/schedule", {"send_at": "next tuesday"}, htmx=False
        )
        past_time = await sessions["manager"].post(
            f"{location}/schedule", {"send_at": "1999-01-01T00:00"}, htmx=False
        )
        for session in sessions.values():
            await session.close()

    assert invalid.status_code == 422
    assert 'data-field="body"' in invalid.text
    assert single_brace.status_code == 422
    assert 'data-field="subject"' in single_brace.text
    assert "{first_name}" in single_brace.text
    assert "write {{ recipient.first_name }}" in single_brace.text
    # The form keeps what was typed.
    assert 'value="Hello {first_name}"' in single_brace.text
    assert ">Hi {{ recipient.name }}</textarea>" in single_brace.text
    assert f'value="{name}"' in single_brace.text
    assert bad_field.status_code == 422
    assert 'data-field="segment.items.0.field"' in bad_field.text
    assert created.status_code in (302, 303)
    assert re.fullmatch(r"/campaigns/\d+", location)
    assert detail.status_code == 200
    assert name in detail.text
    assert 'id="campaign-progress-' in detail.text
    assert "The segment selects <strong>0</strong> contacts" in detail.text
    assert listing.status_code == 200
    assert name in listing.text
    assert rep_new.status_code == 403
    assert agent_list.status_code == 403
    assert rep_cancel.status_code == 403
    assert bad_time.status_code == 422
    assert 'data-field="send_at"' in bad_time.text
    assert past_time.status_code == 422
    assert 'data-field="send_at"' in past_time.text
    assert "is in the past" in past_time.text
    stored = await Campaign.select(Campaign.subject).where(Campaign.name == name)
    assert [row["subject"] for row in stored] == [form["subject"]]
    campaign = await get_campaign(int(location.rsplit("/", 1)[1]))
    assert campaign["rate_per_minute"] == 30
    assert campaign["influence_days"] == 14
    assert campaign["state"] == "draft"


async def make_leads(marker: str, count: int) -> list[dict[str, Any]]:
    """Create ``count`` leads with an email and ``marker`` as their source."""
    leads = []
    for index in range(count):
        address = f"{uuid.uuid4().hex[:10]}@leads.example"
        lead_id = await create_lead(
            {"name": f"Lee{index} Prospect", "email": address, "source": marker},
            None,
        )
        leads.append({"id": lead_id, "email": address})
    return leads


async def test_lead_segment_waits_for_send_at(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    leads = await make_leads(marker, 3)
    # Without an email a lead is no member of the segment.
    await create_lead({"name": "No Address", "source": marker}, None)
    user = await make_user("sales_manager")
    campaign_id = await create_campaign(
        CampaignInput(
            name=unique("Lead campaign"),
            audience="lead",
            segment={
                "type": "group",
                "match": "all",
                "items": [
                    {
                        "type": "condition",
                        "field": "source",
                        "op": "equals",
                        "value": marker,
                    }
                ],
            },
            subject="Hello {{ recipient.first_name }}",
            body="Dear {{ recipient.name }},\n\nA note for new leads.\n",
            rate_per_minute=600,
        ),
        user.id,
    )
    wait_seconds = 8.0
    send_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait_seconds)
    scheduled_at = time.monotonic()
    await schedule_campaign(campaign_id, send_at.isoformat(), user.id)
    inbox = smtp_server.inbox

    with worker_process({"SMTP_URL": smtp_server.url}):
        # The dispatcher runs at start and every five seconds, so it looks
        # at the campaign at least once before the send time.
        await asyncio.sleep(wait_seconds - 1.5)
        waiting = await get_campaign(campaign_id)
        received_while_waiting = len(inbox.messages)
        await wait_until_sent(campaign_id, seconds=60)

    rows = await recipient_rows(campaign_id)
    first_arrival = min(item.at for item in inbox.messages) - scheduled_at
    assert waiting["state"] == "scheduled"
    assert received_while_waiting == 0
    assert first_arrival >= wait_seconds - 0.05, first_arrival
    assert sorted(inbox.addresses()) == sorted(lead["email"] for lead in leads)
    assert set(rows) == {lead["email"] for lead in leads}
    assert {row["lead"] for row in rows.values()} == {lead["id"] for lead in leads}
    assert {row["contact"] for row in rows.values()} == {None}
    assert {row["state"] for row in rows.values()} == {"sent"}
    first = inbox.to(leads[0]["email"])[0]
    assert first["Subject"] == "Hello Lee0"
    assert "Dear Lee0 Prospect," in first.get_content()


async def test_bounced_address_skipped_next_time(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 3)
    bounced = contacts[0]["email"]
    inbox = smtp_server.inbox

    with worker_process({"SMTP_URL": smtp_server.url}):
        first = await campaign_for(marker, rate=600)
        await schedule_campaign(first, None, None)
        await wait_until_sent(first, seconds=60)
        bounced_message = inbox.to(bounced)[0]
        report = await receive_message(
            campaign_bounce(bounced, bounced_message["Message-ID"]),
            EmailSettings.from_env(),
            envelope_from="",
        )
        before = len(inbox.messages)

        second = await campaign_for(marker, rate=600)
        await schedule_campaign(second, None, None)
        await wait_until_sent(second, seconds=60)

    later = [address for item in inbox.messages[before:] for address in item.recipients]
    rows = await recipient_rows(second)
    first_stats = await campaign_stats(first)
    second_stats = await campaign_stats(second)
    assert report.outcome == "bounce"
    assert first_stats["bounced"] == 1
    assert sorted(later) == sorted(contact["email"] for contact in contacts[1:])
    assert rows[bounced]["state"] == "skipped"
    assert rows[bounced]["reason"] == "bounced"
    assert second_stats["sent"] == 2
    assert second_stats["skipped"] == 1


async def test_influence_page_shows_won_and_converted(
    smtp_server: SmtpServer,
) -> None:
    marker = uuid.uuid4().hex[:10]
    contacts = await make_contacts(marker, 1)
    contact = contacts[0]
    manager = await make_user("sales_manager")
    campaign_id = await campaign_for(marker, rate=600)
    await schedule_campaign(campaign_id, None, None)
    with worker_process({"SMTP_URL": smtp_server.url}):
        await wait_until_sent(campaign_id, seconds=60)

    # After the message: the contact's deal is won, and a lead with the
    # contact's email is converted into that same contact.
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, contact=contact["id"], name=unique("Won"))
    await move_deal(deal_id, pipeline["stages"][2], pipeline["stages"][0], manager.id)
    lead_id = await create_lead(
        {"name": "Pat Tester", "email": contact["email"]}, manager.id
    )
    await convert_lead(
        lead_id,
        {"stage": str(pipeline["stages"][0]), "contact": str(contact["id"])},
        manager.id,
    )
    totals = await influence_totals(campaign_id)

    with web_server() as server:
        session = Session(server.url)
        try:
            await session.sign_in(manager.email)
            page = await session.get(f"/campaigns/{campaign_id}")
        finally:
            await session.close()

    assert totals["deals_won"] == 1
    assert totals["leads_converted"] == 1
    # The won deal counts as created too, and so does the conversion's deal.
    assert totals["deals_created"] == 2
    assert page.status_code == 200
    assert '<span class="deals-won">1</span>' in page.text
    assert '<span class="leads-converted">1</span>' in page.text


async def make_last_name_blind_user() -> Any:
    """Create a user who may edit campaigns and read contacts without last names."""
    role = Role(
        name=f"surname_blind_{uuid.uuid4().hex[:6]}",
        label="Surname blind",
        permissions={
            "campaign": {"read": "all", "edit": "all"},
            "contact": {"read": "all"},
        },
        field_rules={"contact": {"last_name": "hidden"}},
    )
    await role.save()
    return await make_user(role.name)


async def test_preview_follows_field_rules() -> None:
    marker = uuid.uuid4().hex[:10]
    await make_contacts(marker, 2)
    manager = await make_user("sales_manager")
    blind = await make_last_name_blind_user()
    rep = await make_user("sales_rep")
    campaign_id = await campaign_for(marker, rate=60)
    empty_id = await campaign_for(uuid.uuid4().hex, rate=60)

    with web_server() as server:
        sessions = {}
        for role, user in (("manager", manager), ("blind", blind), ("rep", rep)):
            sessions[role] = Session(server.url)
            await sessions[role].sign_in(user.email)
        full = await sessions["manager"].get(f"/campaigns/{campaign_id}")
        partial = await sessions["blind"].get(f"/campaigns/{campaign_id}")
        rep_page = await sessions["rep"].get(f"/campaigns/{campaign_id}")
        sample = await sessions["manager"].get(f"/campaigns/{empty_id}")
        for session in sessions.values():
            await session.close()

    assert full.status_code == 200
    assert '<strong class="preview-subject">News for Pat0</strong>' in full.text
    assert "Hello Pat0 Tester," in full.text
    assert "/unsubscribe/test" in full.text
    assert "Send a test to me" in full.text
    # The last name is hidden, and so is the full name made from it.
    assert partial.status_code == 200
    assert "News for Pat0" in partial.text
    assert "Hello (hidden)," in partial.text
    assert "Pat0 Tester" not in partial.text
    assert "Send a test to me" in partial.text
    # A rep reads the preview but may not send a test.
    assert "News for Pat0" in rep_page.text
    assert "Send a test to me" not in rep_page.text
    assert sample.status_code == 200
    assert "sample values stand in" in sample.text
    assert "News for Ada" in sample.text


async def test_test_send_arrives_uncounted(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    await make_contacts(marker, 2)
    blind = await make_last_name_blind_user()
    rep = await make_user("sales_rep")
    campaign_id = await campaign_for(marker, rate=60)
    url = f"/campaigns/{campaign_id}"
    inbox = smtp_server.inbox

    with web_server() as server, worker_process({"SMTP_URL": smtp_server.url}):
        session = Session(server.url)
        rep_session = Session(server.url)
        await session.sign_in(blind.email)
        await rep_session.sign_in(rep.email)
        no_token = await session.http.post(f"{url}/test", data={})
        by_rep = await rep_session.post(f"{url}/test", {}, htmx=False)
        queued = await session.post(f"{url}/test", {}, htmx=False)
        notice = await session.get(queued.headers.get("location", url))
        await session.close()
        await rep_session.close()

        async def arrived() -> bool:
            return bool(inbox.to(blind.email))

        await wait_for(arrived, seconds=60)

    (message,) = inbox.to(blind.email)
    body = message.get_content()
    assert no_token.status_code == 403
    assert by_rep.status_code == 403
    assert queued.status_code in (302, 303)
    assert queued.headers["location"] == f"{url}?test=queued"
    assert f"A test message to {blind.email} is queued" in notice.text
    assert message["Subject"] == "[Test] News for Pat0"
    assert message[TEST_HEADER] == str(campaign_id)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Hello (hidden)," in body
    assert "Tester" not in body
    assert len(inbox.messages) == 1
    # No recipient row records the test, so no figure counts it.
    stats = await campaign_stats(campaign_id)
    rows = await recipient_rows(campaign_id)
    campaign = await get_campaign(campaign_id)
    assert stats["total"] == 0
    assert stats["sent"] == 0
    assert rows == {}
    assert campaign["state"] == "draft"
