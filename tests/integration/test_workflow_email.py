"""The email actions of workflow rules, delivered by a real arq worker.

Mail goes to an SMTP server that the test runs on loopback (aiosmtpd), or,
with SMTP_URL unset, to ``.eml`` files in the outbox folder.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.access.tables import Role
from app.accounts.tables import Account
from app.contacts.service import create_contact
from app.deals.service import create_deal, update_deal
from app.email.inbound import receive_message
from app.email.settings import EmailSettings
from app.email.templates import save_template
from app.errors import FieldError
from app.merge import Edit
from app.tickets.service import create_ticket, update_ticket
from app.webhooks.delivery import deliver_next
from app.webhooks.outbox import MAIL, encode, insert_message
from app.webhooks.tables import OutboxMessage
from app.workflows.jobs import close_queue
from app.workflows.placeholders import HIDDEN
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule
from tests.factories import (
    HIDDEN_AMOUNT,
    contains,
    make_account,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    shows_hidden_amount,
    unique,
)
from tests.servers import worker_process
from tests.smtp_inbox import SmtpServer
from tests.smtp_inbox import smtp_server as running_smtp_server

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def queue_closed() -> AsyncIterator[None]:
    """Close the arq connection that queueing side effects opened here."""
    yield
    await close_queue()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)


def subject_condition(marker: str) -> dict[str, Any]:
    return {
        "type": "group",
        "items": [
            {"type": "condition", "field": "subject", "op": "contains", "value": marker}
        ],
    }


async def email_rule(marker: str, actions: list[dict[str, Any]]) -> int:
    rule_id = await save_rule(
        None,
        "ticket",
        f"Mail {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": subject_condition(marker),
            "actions": actions,
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    return rule_id


async def test_send_email_reaches_smtp_server(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await email_rule(
        marker,
        [
            {
                "kind": "send_email",
                "to": "oncall@example.com",
                "subject": "New ticket {record.id}",
                "body": "Subject: {record.subject}\nRule: {rule.name}",
            }
        ],
    )
    inbox = smtp_server.inbox
    try:
        with worker_process({"SMTP_URL": smtp_server.url}):
            ticket_id = await create_ticket({"subject": f"Disk full {marker}"}, None)

            async def received() -> bool:
                return len(inbox.messages) >= 1

            await wait_for(received, seconds=30)
            # A second message would be a repeated delivery.
            await asyncio.sleep(1)

        assert len(inbox.messages) == 1
        recipients, message = inbox.messages[0].recipients, inbox.messages[0].message
        assert recipients == ["oncall@example.com"]
        assert message["To"] == "oncall@example.com"
        assert message["Subject"] == f"New ticket {ticket_id} [#T-{ticket_id}]"
        assert "Switchboard" in message["From"]
        body = message.get_content()
        assert f"Subject: Disk full {marker}" in body
        assert f"Rule: Mail {marker}" in body
        runs = await RuleRun.select(RuleRun.outcome).where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_notify_by_email_mails_each_member(smtp_server: SmtpServer) -> None:
    team_id = await make_team()
    members = [await make_user("support_agent", team=team_id) for _ in range(2)]
    marker = uuid.uuid4().hex[:10]
    rule_id = await email_rule(
        marker,
        [
            {
                "kind": "notify",
                "team_id": team_id,
                "subject": "Heads up: {record.subject}",
                "body": "Ticket {record.id} needs a look.",
                "email": True,
            }
        ],
    )
    inbox = smtp_server.inbox
    try:
        with worker_process({"SMTP_URL": smtp_server.url}):
            # The members read only their team's tickets, and so its fields.
            ticket_id = await create_ticket(
                {"subject": f"Router {marker}", "team": str(team_id)}, None
            )

            async def received() -> bool:
                return len(inbox.messages) >= len(members)

            await wait_for(received, seconds=30)
            await asyncio.sleep(1)

        assert len(inbox.messages) == len(members)
        recipients = sorted(inbox.addresses())
        assert recipients == sorted(member.email for member in members)
        for message in (item.message for item in inbox.messages):
            assert message["Subject"] == f"Heads up: Router {marker}"
            assert f"Ticket {ticket_id} needs a look." in message.get_content()
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_send_email_without_smtp_writes_outbox(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await email_rule(
        marker,
        [
            {
                "kind": "send_email",
                "to": "billing@example.com",
                "subject": "Refund asked: {record.subject}",
                "body": "Priority {record.priority}",
            }
        ],
    )
    outbox = tmp_path / "outbox"
    try:
        # SMTP_URL is empty, so the worker writes the message to its outbox.
        with worker_process({"SMTP_URL": "", "CRM_DATA_DIR": str(tmp_path)}):
            await create_ticket(
                {"subject": unique(f"Refund {marker}"), "priority": "high"}, None
            )

            async def written() -> bool:
                return outbox.is_dir() and any(outbox.glob("*.eml"))

            await wait_for(written, seconds=30)
            await asyncio.sleep(1)

        files = list(outbox.glob("*.eml"))
        assert len(files) == 1
        message = email.message_from_bytes(
            files[0].read_bytes(), policy=email.policy.default
        )
        assert isinstance(message, email.message.EmailMessage)
        assert message["To"] == "billing@example.com"
        assert message["Subject"].startswith(f"Refund asked: Refund {marker}")
        assert "Priority high" in message.get_content()
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_send_email_template_to_requester_and_assignee(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex[:10]
    team_id = await make_team()
    agent = await make_user("support_agent", name=f"Agent {marker}", team=team_id)
    requester = await create_contact(
        {
            "first_name": "Ada",
            "last_name": marker,
            "email": f"ada-{marker}@example.org",
        },
        None,
    )
    template_id = await save_template(
        None,
        unique("Rule template"),
        "Hello {{ contact.first_name }},\n"
        "{{ ticket.tag }} is now {{ ticket.status }} at {{ ticket.priority }}.\n"
        "{{ agent.name }}",
        agent.id,
    )
    rule_id = await save_rule(
        None,
        "ticket",
        f"Template {marker}",
        {
            "trigger": {"kind": "updated"},
            "conditions": subject_condition(marker),
            "actions": [
                {
                    "kind": "send_email",
                    "recipient": "requester",
                    "template_id": template_id,
                    "subject": "About {record.subject}",
                },
                {
                    "kind": "send_email",
                    "recipient": "owner",
                    "template_id": template_id,
                    "subject": "Copy: {record.subject}",
                },
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    ticket_id = await make_ticket(
        "open",
        subject=f"Invoice {marker}",
        requester=requester,
        assignee=agent.id,
        team=team_id,
        priority="high",
    )
    inbox = smtp_server.inbox
    try:
        with worker_process({"SMTP_URL": smtp_server.url}):
            await update_ticket(ticket_id, {"status": Edit("open", "pending")}, None)

            async def received() -> bool:
                return len(inbox.messages) >= 2

            await wait_for(received, seconds=30)
            await asyncio.sleep(1)

        by_recipient = {item.recipients[0]: item.message for item in inbox.messages}
        assert len(inbox.messages) == 2
        assert sorted(by_recipient) == sorted(
            [f"ada-{marker}@example.org", agent.email]
        )
        to_requester = by_recipient[f"ada-{marker}@example.org"]
        assert to_requester["Subject"] == f"About Invoice {marker} [#T-{ticket_id}]"
        body = to_requester.get_content()
        assert "Hello Ada," in body
        assert f"[#T-{ticket_id}] is now pending at high." in body
        assert f"Agent {marker}" in body
        assert by_recipient[agent.email]["Subject"] == (
            f"Copy: Invoice {marker} [#T-{ticket_id}]"
        )
        runs = await RuleRun.select(RuleRun.outcome).where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done"]

        # The customer's answer threads onto the ticket by the subject's tag.
        answer = EmailMessage()
        answer["From"] = f"Ada {marker} <ada-{marker}@example.org>"
        answer["To"] = to_requester["From"]
        answer["Subject"] = f"Re: {to_requester['Subject']}"
        answer["Message-ID"] = make_msgid(domain="example.org")
        answer.set_content("Thanks, paid today.")
        settings = EmailSettings.from_env({"CRM_DATA_DIR": str(tmp_path)})
        result = await receive_message(answer.as_bytes(), settings)
        assert result.outcome == "threaded"
        assert result.ticket_id == ticket_id
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_owner_template_mail_hides_fields(smtp_server: SmtpServer) -> None:
    marker = uuid.uuid4().hex[:10]
    # A support agent who may not see contacts' email addresses either.
    role = Role(
        name=f"agent_{marker}",
        label=f"Support agent {marker}",
        permissions={
            "deal": {"read": "all"},
            "contact": {"read": "all"},
            "account": {"read": "all"},
        },
        field_rules={"deal": {"amount": "hidden"}, "contact": {"email": "hidden"}},
    )
    await role.save()
    agent = await make_user(role.name)
    admin = await make_user("admin")
    account_name = f"Looms {marker}"
    account_id = await make_account(name=account_name)
    contact_email = f"lin-{marker}@example.org"
    contact_id = await create_contact(
        {
            "first_name": "Lin",
            "last_name": marker,
            "email": contact_email,
            "account": str(account_id),
        },
        None,
    )
    template_id = await save_template(
        None,
        unique("Owner template"),
        "Call {{ contact.name }} <{{ contact.email }}> at {{ account.name }}.",
        admin.id,
    )
    rule_id = await save_rule(
        None,
        "deal",
        f"Owner mail {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": contains("name", marker),
            "actions": [
                {
                    "kind": "send_email",
                    "recipient": "owner",
                    "template_id": template_id,
                    "subject": "Deal worth {record.amount}",
                }
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    pipeline = await make_pipeline()
    inbox = smtp_server.inbox
    try:
        with worker_process({"SMTP_URL": smtp_server.url}):
            for owner in (agent, admin):
                await create_deal(
                    {
                        "name": f"Deal {marker} for {owner.id}",
                        "pipeline": str(pipeline["id"]),
                        "stage": str(pipeline["stages"][0]),
                        "amount": HIDDEN_AMOUNT,
                        "owner": str(owner.id),
                        "contact": str(contact_id),
                    },
                    None,
                )

            # The worker also sends other tests' pending mail, so only the
            # owners' messages count.
            async def received() -> bool:
                return bool(inbox.to(agent.email) and inbox.to(admin.email))

            await wait_for(received, seconds=30)
            await asyncio.sleep(1)

        to_agent = inbox.to(agent.email)
        to_admin = inbox.to(admin.email)
        assert len(to_agent) == 1
        assert len(to_admin) == 1
        assert to_agent[0]["Subject"] == f"Deal worth {HIDDEN}"
        agent_body = to_agent[0].get_content()
        assert f"Call Lin {marker} <{HIDDEN}> at {account_name}." in agent_body
        assert contact_email not in agent_body
        assert not shows_hidden_amount(agent_body)
        assert shows_hidden_amount(to_admin[0]["Subject"])
        admin_body = to_admin[0].get_content()
        assert f"Call Lin {marker} <{contact_email}> at {account_name}." in admin_body
        runs = await RuleRun.select(RuleRun.outcome).where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done", "done"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_send_email_without_requester_fails_run() -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await email_rule(
        marker,
        [
            {
                "kind": "send_email",
                "recipient": "requester",
                "subject": "Hi",
                "body": "Text",
            }
        ],
    )
    try:
        ticket_id = await create_ticket({"subject": f"Nobody {marker}"}, None)

        runs = await RuleRun.select(RuleRun.outcome, RuleRun.error).where(
            RuleRun.rule == rule_id
        )
        assert [run["outcome"] for run in runs] == ["failed"]
        assert f"ticket {ticket_id} has no requester" in runs[0]["error"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"recipient": "address", "to": "not-an-address"}, "actions.0.to"),
        ({"recipient": "owner", "template_id": 2_000_000_000}, "actions.0.template_id"),
        (
            {"recipient": "owner", "template_id": 1, "body": "Also text"},
            "actions.0.body",
        ),
        ({"recipient": "owner"}, "actions.0.body"),
    ],
)
async def test_send_email_checked_at_save(action: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as raised:
        await save_rule(
            None,
            "ticket",
            "Bad mail",
            {
                "trigger": {"kind": "created"},
                "actions": [{"kind": "send_email", "subject": "Hi", **action}],
            },
            None,
        )

    assert raised.value.field == field


async def test_send_email_requester_rejected_for_accounts() -> None:
    with pytest.raises(FieldError) as raised:
        await save_rule(
            None,
            "account",
            "Bad mail",
            {
                "trigger": {"kind": "created"},
                "actions": [
                    {
                        "kind": "send_email",
                        "recipient": "requester",
                        "subject": "Hi",
                        "body": "Text",
                    }
                ],
            },
            None,
        )

    assert raised.value.field == "actions.0.recipient"


async def test_deal_template_sees_contact_and_owner() -> None:
    marker = uuid.uuid4().hex[:10]
    owner = await make_user("sales_rep", name=f"Owner {marker}")
    account_name = unique("Looms")
    account = await Account.insert(Account(name=account_name)).returning(Account.id)
    contact = await create_contact(
        {
            "first_name": "Lin",
            "last_name": marker,
            "email": f"lin-{marker}@example.org",
            "account": str(account[0]["id"]),
        },
        None,
    )
    template_id = await save_template(
        None,
        unique("Deal template"),
        "Hi {{ contact.first_name }} at {{ account.name }}. {{ agent.name }}",
        owner.id,
    )
    rule_id = await save_rule(
        None,
        "deal",
        f"Deal mail {marker}",
        {
            "trigger": {"kind": "updated"},
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "name",
                        "op": "contains",
                        "value": marker,
                    }
                ],
            },
            "actions": [
                {
                    "kind": "send_email",
                    "recipient": "requester",
                    "template_id": template_id,
                    "subject": "Your order",
                }
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    pipeline = await make_pipeline()
    deal_id = await make_deal(
        pipeline, name=f"Order {marker}", owner=owner.id, contact=contact
    )
    try:
        await update_deal(deal_id, {"amount": Edit(Decimal("1000"), "2000")}, None)

        messages = await OutboxMessage.select(OutboxMessage.payload).where(
            (OutboxMessage.kind == "mail")
            & OutboxMessage.payload.like(f"%lin-{marker}@example.org%")
        )
        assert len(messages) == 1
        payload = json.loads(messages[0]["payload"])
        assert payload["to"] == f"lin-{marker}@example.org"
        assert payload["subject"] == "Your order"
        assert payload["text"] == f"Hi Lin at {account_name}. Owner {marker}"
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_ticket_template_rejected_for_deals() -> None:
    admin = await make_user()
    template_id = await save_template(
        None, unique("Ticket template"), "About {{ ticket.tag }}", admin.id
    )

    with pytest.raises(FieldError) as raised:
        await save_rule(
            None,
            "deal",
            "Deal mail",
            {
                "trigger": {"kind": "created"},
                "actions": [
                    {
                        "kind": "send_email",
                        "recipient": "owner",
                        "template_id": template_id,
                        "subject": "Hi",
                    }
                ],
            },
            None,
        )

    assert raised.value.field == "actions.0.template_id"
    assert "cannot be used on deals" in raised.value.reason
    assert "ticket" in raised.value.reason


async def test_subject_value_breaks_become_spaces() -> None:
    marker = uuid.uuid4().hex[:10]
    address = f"subject-{marker}@example.org"
    rule_id = await email_rule(
        marker,
        [
            {
                "kind": "send_email",
                "to": address,
                "subject": "About {record.subject}",
                "body": "Subject: {record.subject}",
            }
        ],
    )
    try:
        subject = f"Evil {marker}\r\nBcc: victim@example.org"
        ticket_id = await create_ticket({"subject": subject}, None)

        messages = await OutboxMessage.select(OutboxMessage.payload).where(
            (OutboxMessage.kind == "mail") & OutboxMessage.payload.like(f"%{address}%")
        )
        assert len(messages) == 1
        payload = json.loads(messages[0]["payload"])
        assert payload["subject"] == (
            f"About Evil {marker}  Bcc: victim@example.org [#T-{ticket_id}]"
        )
        # The body is not a header, so it keeps the line break.
        assert payload["text"] == f"Subject: {subject}"
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        # No later test's worker may send this mail.
        await OutboxMessage.delete().where(
            (OutboxMessage.kind == "mail") & OutboxMessage.payload.like(f"%{address}%")
        )


async def test_unbuildable_mail_fails_without_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = {
        "to": "someone@example.org",
        "subject": "Stored before the check\nBcc: victim@example.org",
        "text": "Hello",
    }
    outbox_id = await insert_message(MAIL, encode(payload))

    with caplog.at_level(logging.ERROR, logger="app.webhooks.delivery"):
        status = await deliver_next(only_id=outbox_id)

    assert status == "failed"
    row = await OutboxMessage.select().where(OutboxMessage.id == outbox_id).first()
    assert row is not None
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert "not retried" in row["last_error"]
    assert "linefeed or carriage return" in row["last_error"]
    logged = [
        record.getMessage()
        for record in caplog.records
        if "giving up" in record.getMessage()
    ]
    assert len(logged) == 1
    assert f"message_id={row['message_id']} id={outbox_id} kind=mail" in logged[0]
