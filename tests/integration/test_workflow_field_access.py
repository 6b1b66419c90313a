"""Rule texts sent to users show only the fields each user may read.

The support agent role hides deal amounts, as the deal page and the API do,
so a notification, task or mail a rule writes for such a user shows
"(hidden)" where the amount would be. A team renders per member. Mail to a
fixed address still gets every field, and so does the requester. A reply
template mailed to the owner shows "(hidden)" for each value whose field
the owner may not read. Texts a rule stores on the record (a note, a
copied field value) show no field that a role hides and no encrypted field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from app.access.tables import Role
from app.comments.tables import Comment
from app.contacts.service import create_contact
from app.deals.service import create_deal
from app.email.templates import save_template
from app.merge import Edit
from app.tasks.tables import Task
from app.tickets.service import update_ticket
from app.webhooks.tables import OutboxMessage
from app.workflows.placeholders import HIDDEN
from app.workflows.records import RECORD_TYPES, load_record
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import WorkflowRule
from tests.factories import (
    contains,
    make_account,
    make_contact,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    runs_of,
    unique,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]

AMOUNT = "555444"
SHOWN = "555444.00"


@pytest_asyncio.fixture(loop_scope="session")
async def rules() -> AsyncIterator[list[int]]:
    created: list[int] = []
    yield created
    await WorkflowRule.delete().where(WorkflowRule.id.is_in(created or [0]))


@pytest_asyncio.fixture(loop_scope="session")
async def outbox() -> AsyncIterator[list[int]]:
    """Collect the ids of the outbox messages a test read. They are deleted
    after it, so that no later test's worker sends them."""
    read: list[int] = []
    yield read
    await OutboxMessage.delete().where(OutboxMessage.id.is_in(read or [0]))


async def deal_rule(
    rules: list[int], marker: str, actions: list[dict[str, Any]]
) -> int:
    """Enable a rule on new deals whose name contains ``marker``."""
    definition = {
        "trigger": {"kind": "created"},
        "conditions": contains("name", marker),
        "actions": actions,
    }
    rule_id = await save_rule(None, "deal", f"Amounts {marker}", definition, None)
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    return rule_id


async def new_deal(marker: str, **values: Any) -> int:
    pipeline = await make_pipeline()
    form = {
        "name": f"Deal {marker}",
        "pipeline": str(pipeline["id"]),
        "stage": str(pipeline["stages"][0]),
        "amount": AMOUNT,
        **{name: str(value) for name, value in values.items()},
    }
    return await create_deal(form, None)


async def last_outbox_id() -> int:
    rows = await OutboxMessage.raw(
        "SELECT coalesce(max(id), 0) AS id FROM outbox_message"
    )
    return int(rows[0]["id"])


async def payloads_after(
    after: int, kind: str, read: list[int], matches: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Return the payloads of ``kind`` written after ``after`` that match,
    adding their ids to ``read``."""
    rows = await OutboxMessage.select(OutboxMessage.id, OutboxMessage.payload).where(
        (OutboxMessage.id > after) & (OutboxMessage.kind == kind)
    )
    payloads = []
    for row in rows:
        payload = json.loads(row["payload"])
        if matches(payload):
            read.append(row["id"])
            payloads.append(payload)
    return payloads


async def notify_payloads(
    after: int, deal_id: int, read: list[int]
) -> list[dict[str, Any]]:
    def about_deal(payload: dict[str, Any]) -> bool:
        return payload["link"] == f"/deals/{deal_id}"

    return await payloads_after(after, "notify", read, about_deal)


async def notifications_of(after: int, deal_id: int, read: list[int]) -> dict[int, str]:
    """Return each notified user's message about the deal."""
    messages: dict[int, str] = {}
    for payload in await notify_payloads(after, deal_id, read):
        for user_id in payload["user_ids"]:
            messages[user_id] = payload["message"]
    return messages


async def mails_to(after: int, address: str, read: list[int]) -> list[dict[str, Any]]:
    def to_address(payload: dict[str, Any]) -> bool:
        return payload["to"] == address

    return await payloads_after(after, "mail", read, to_address)


async def test_notify_hides_amount_from_agent(
    rules: list[int], outbox: list[int]
) -> None:
    marker = uuid.uuid4().hex[:10]
    agent = await make_user("support_agent")
    await deal_rule(
        rules,
        marker,
        [
            {
                "kind": "notify",
                "user_id": agent.id,
                "body": "Deal {record.name} amount {record.amount}",
                "subject": "Amount {record.amount}",
                "email": True,
            }
        ],
    )
    before = await last_outbox_id()

    deal_id = await new_deal(marker)

    messages = await notifications_of(before, deal_id, outbox)
    assert messages == {agent.id: f"Deal Deal {marker} amount {HIDDEN}"}
    mails = await mails_to(before, agent.email, outbox)
    assert len(mails) == 1
    assert mails[0]["subject"] == f"Amount {HIDDEN}"
    assert AMOUNT not in mails[0]["text"]


async def test_team_notify_renders_per_member(
    rules: list[int], outbox: list[int]
) -> None:
    marker = uuid.uuid4().hex[:10]
    team = await make_team()
    admin = await make_user("admin", team=team)
    agents = [await make_user("support_agent", team=team) for _ in range(2)]
    # A rep reads only deals of their team, and this deal has no team.
    rep = await make_user("sales_rep", team=team)
    rule_id = await deal_rule(
        rules,
        marker,
        [
            {
                "kind": "notify",
                "team_id": team,
                "body": "{rule.name}: {record.name} for {record.amount}",
            }
        ],
    )
    before = await last_outbox_id()

    deal_id = await new_deal(marker)

    messages = await notifications_of(before, deal_id, outbox)
    name = f"Amounts {marker}"
    assert messages[admin.id] == f"{name}: Deal {marker} for {SHOWN}"
    for agent in agents:
        assert messages[agent.id] == f"{name}: Deal {marker} for {HIDDEN}"
    assert messages[rep.id] == f"{name}: {HIDDEN} for {HIDDEN}"
    # Members who read the same fields share one message.
    payloads = await notify_payloads(before, deal_id, outbox)
    assert len(payloads) == 3
    assert [run["outcome"] for run in await runs_of(rule_id)] == ["done"]


async def test_custom_role_hides_field_in_task(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    role = Role(
        name=f"close_blind_{marker[:6]}",
        label="Close date blind",
        permissions={"deal": {"read": "all", "edit": "all"}},
        field_rules={"deal": {"close_date": "hidden"}},
    )
    await role.save()
    user = await make_user(role.name)
    await deal_rule(
        rules,
        marker,
        [
            {
                "kind": "create_task",
                "user_id": user.id,
                "body": "Call about {record.amount} by {record.close_date}",
                "due_in_minutes": 60,
            }
        ],
    )

    deal_id = await new_deal(marker, close_date="2031-05-06")

    tasks = await Task.select(Task.title, Task.assignee).where(Task.deal == deal_id)
    # The amount is hidden too: the deal's task list shows the title to
    # support agents, whose role hides amounts.
    assert tasks == [{"title": f"Call about {HIDDEN} by {HIDDEN}", "assignee": user.id}]


async def test_send_email_hides_from_owner_only(
    rules: list[int], outbox: list[int]
) -> None:
    marker = uuid.uuid4().hex[:10]
    agent = await make_user("support_agent")
    outside = f"{marker}@example.org"
    text = {"subject": "Deal {record.amount}", "body": "Amount {record.amount}"}
    await deal_rule(
        rules,
        marker,
        [
            {"kind": "send_email", "recipient": "owner", **text},
            {"kind": "send_email", "recipient": "address", "to": outside, **text},
        ],
    )
    before = await last_outbox_id()

    await new_deal(marker, owner=agent.id)

    to_owner = await mails_to(before, agent.email, outbox)
    assert len(to_owner) == 1
    assert to_owner[0]["subject"] == f"Deal {HIDDEN}"
    assert to_owner[0]["text"] == f"Amount {HIDDEN}"
    # An address outside the users gets every field, as documented.
    to_address = await mails_to(before, outside, outbox)
    assert len(to_address) == 1
    assert to_address[0]["subject"] == f"Deal {SHOWN}"
    assert to_address[0]["text"] == f"Amount {SHOWN}"


async def test_owner_template_hides_ticket_values(
    rules: list[int], outbox: list[int]
) -> None:
    marker = uuid.uuid4().hex[:10]
    # Reads tickets without their priority, and no accounts at all.
    role = Role(
        name=f"no_priority_{marker[:6]}",
        label="Priority blind",
        permissions={
            "ticket": {"read": "all", "edit": "all"},
            "contact": {"read": "all"},
        },
        field_rules={"ticket": {"priority": "hidden"}},
    )
    await role.save()
    agent = await make_user(role.name)
    account_name = unique("Account")
    account_id = await make_account(name=account_name)
    requester_email = f"ada-{marker}@example.org"
    requester = await make_contact(
        first_name="Ada", email=requester_email, account=account_id
    )
    template_id = await save_template(
        None,
        unique("Status template"),
        "{{ ticket.tag }} {{ ticket.subject }} is {{ ticket.priority }} "
        "for {{ contact.first_name }} of {{ account.name }}",
        agent.id,
    )
    definition = {
        "trigger": {"kind": "updated"},
        "conditions": contains("subject", marker),
        "actions": [
            {
                "kind": "send_email",
                "recipient": recipient,
                "template_id": template_id,
                "subject": "About {record.subject}",
            }
            for recipient in ("owner", "requester")
        ],
    }
    rule_id = await save_rule(None, "ticket", f"Template {marker}", definition, None)
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    subject = f"Printer {marker}"
    ticket_id = await make_ticket(
        "open",
        subject=subject,
        requester=requester,
        account=account_id,
        assignee=agent.id,
        priority="urgent",
    )
    before = await last_outbox_id()

    await update_ticket(ticket_id, {"status": Edit("open", "pending")}, None)

    to_owner = await mails_to(before, agent.email, outbox)
    to_requester = await mails_to(before, requester_email, outbox)
    assert len(to_owner) == 1
    assert to_owner[0]["text"] == (
        f"[#T-{ticket_id}] {subject} is {HIDDEN} for Ada of {HIDDEN}"
    )
    # The requester is no user, so the reply template shows every value.
    assert len(to_requester) == 1
    assert to_requester[0]["text"] == (
        f"[#T-{ticket_id}] {subject} is urgent for Ada of {account_name}"
    )


async def test_note_hides_fields_roles_hide(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    await deal_rule(
        rules,
        marker,
        [{"kind": "add_note", "body": "{record.name} is worth {record.amount}"}],
    )

    deal_id = await new_deal(marker)

    notes = await Comment.select(Comment.body).where(Comment.deal == deal_id)
    assert [note["body"] for note in notes] == [
        f"<p>Deal {marker} is worth {HIDDEN}</p>"
    ]


async def test_copied_value_keeps_field_hidden(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    await deal_rule(
        rules,
        marker,
        [
            {
                "kind": "set_field",
                "field": "name",
                "value": "{record.name} at {record.amount}",
            }
        ],
    )

    deal_id = await new_deal(marker)

    deal = await load_record(RECORD_TYPES["deal"], deal_id)
    assert deal is not None
    assert deal["name"] == f"Deal {marker} at {HIDDEN}"


async def test_encrypted_value_copied_only_encrypted(rules: list[int]) -> None:
    marker = uuid.uuid4().hex[:10]
    phone = "+44 20 7946 0123"
    definition = {
        "trigger": {"kind": "created"},
        "conditions": contains("last_name", marker),
        "actions": [
            {"kind": "set_field", "field": "title", "value": "Call {record.phone}"},
            {
                "kind": "set_field",
                "field": "personal_notes",
                "value": "Call {record.phone}",
            },
        ],
    }
    rule_id = await save_rule(None, "contact", f"Phones {marker}", definition, None)
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)

    contact_id = await create_contact(
        {"first_name": "Ada", "last_name": marker, "phone": phone}, None
    )

    contact = await load_record(RECORD_TYPES["contact"], contact_id)
    assert contact is not None
    assert contact["title"] == f"Call {HIDDEN}"
    assert contact["personal_notes"] == f"Call {phone}"
    stored = await Comment.raw(
        "SELECT title, personal_notes FROM contact WHERE id = {}", contact_id
    )
    assert phone not in str(stored[0])
