"""When "created", "Email received" and SLA rules run, and in which transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from app.email.inbound import receive_message
from app.email.settings import EmailSettings
from app.events.tables import Event
from app.sla import clock as sla_clock
from app.sla.breaches import detect_breaches
from app.tickets.tables import Ticket
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun
from tests.integration.test_sla import berlin, make_policy, open_ticket

pytestmark = pytest.mark.timeout(60)

DOMAIN = "switchboard.test"


@pytest.fixture
def settings(tmp_path: Path) -> EmailSettings:
    return EmailSettings.from_env(
        {"CRM_DATA_DIR": str(tmp_path), "EMAIL_DOMAIN": DOMAIN}
    )


@pytest.fixture(autouse=True)
def real_sla_clock() -> Iterator[None]:
    yield
    sla_clock.set_now(None)


def condition(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "condition", "field": field, "op": op, "value": value}


async def enabled_rule(
    rules: list[int], trigger: dict[str, Any], items: list[dict[str, Any]], tag: str
) -> int:
    rule_id = await save_rule(
        None,
        "ticket",
        f"Rule {uuid.uuid4().hex[:8]}",
        {
            "trigger": trigger,
            "conditions": {"type": "group", "match": "all", "items": items},
            "actions": [{"kind": "add_tag", "tag": tag}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    rules.append(rule_id)
    return rule_id


def mail(subject: str, text: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.org>"
    message["To"] = f"support@{DOMAIN}"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    message.add_attachment(
        b"line one\n", maintype="text", subtype="plain", filename="log.txt"
    )
    return message.as_bytes()


async def outcomes(rule_id: int) -> list[str]:
    rows = await RuleRun.select(RuleRun.outcome).where(RuleRun.rule == rule_id)
    return [row["outcome"] for row in rows]


async def tags_of(ticket_id: int) -> list[str]:
    rows = await Ticket.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    return list(rows[0]["tags"] or [])


async def event_times(ticket_id: int) -> list[tuple[str, dt.datetime]]:
    rows = (
        await Event.select(Event.kind, Event.created_at)
        .where((Event.record_type == "ticket") & (Event.record_id == ticket_id))
        .order_by(Event.id)
    )
    return [(row["kind"], row["created_at"]) for row in rows]


async def test_created_rule_sees_message_and_attachments(
    rules: list[int], settings: EmailSettings
) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await enabled_rule(
        rules,
        {"kind": "created"},
        [
            condition("subject", "contains", marker),
            condition("first_comment", "contains", f"smoke {marker}"),
            condition("attachments", "equals", "1"),
        ],
        "complete",
    )

    result = await receive_message(
        mail(f"Printer {marker}", f"The printer emits smoke {marker}."), settings
    )

    assert result.outcome == "created"
    assert result.ticket_id is not None
    assert await outcomes(rule_id) == ["done"]
    assert await tags_of(result.ticket_id) == ["complete"]


async def test_urgent_mail_matches_priority_rule(
    rules: list[int], settings: EmailSettings
) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await enabled_rule(
        rules,
        {"kind": "created"},
        [
            condition("subject", "contains", marker),
            condition("priority", "equals", "urgent"),
        ],
        "escalated",
    )

    urgent = await receive_message(
        mail(f"Outage {marker}", "All down.", X_Priority="1 (Highest)"), settings
    )
    high = await receive_message(
        mail(f"Slow {marker}", "Slow pages.", Importance="high"), settings
    )
    plain = await receive_message(mail(f"Question {marker}", "How to?"), settings)

    priorities = await Ticket.raw(
        "SELECT id, priority FROM ticket WHERE id = ANY({}) ORDER BY id",
        [urgent.ticket_id, high.ticket_id, plain.ticket_id],
    )
    assert [row["priority"] for row in priorities] == ["urgent", "high", "medium"]
    assert sorted(await outcomes(rule_id)) == ["done", "skipped", "skipped"]
    assert urgent.ticket_id is not None
    assert await tags_of(urgent.ticket_id) == ["escalated"]


async def test_email_received_rule_runs_in_message_transaction(
    rules: list[int], settings: EmailSettings
) -> None:
    marker = uuid.uuid4().hex[:10]
    rule_id = await enabled_rule(
        rules,
        {"kind": "email.received"},
        [
            condition("subject", "contains", marker),
            condition("details.attachments", "equals", "1"),
        ],
        "mailed",
    )

    result = await receive_message(mail(f"Refund {marker}", "Please."), settings)

    assert result.ticket_id is not None
    assert await outcomes(rule_id) == ["done"]
    assert await tags_of(result.ticket_id) == ["mailed"]
    events = await event_times(result.ticket_id)
    assert [kind for kind, _ in events] == ["ticket.created", "ticket.updated"]
    # now() is the transaction's start, so one value means one transaction.
    assert len({at for _, at in events}) == 1


async def test_sla_rule_runs_in_breach_transaction(rules: list[int]) -> None:
    setup = await make_policy()
    ticket_id = await open_ticket(setup["team"], berlin(2026, 3, 2, 9, 0))
    rule_id = await enabled_rule(
        rules,
        {"kind": "sla.breached"},
        [
            condition("id", "equals", str(ticket_id)),
            condition("details.metric", "equals", "first_response"),
        ],
        "breached",
    )

    counts = await detect_breaches(berlin(2026, 3, 2, 10, 30))

    assert counts["failed"] == 0
    assert await outcomes(rule_id) == ["done"]
    assert await tags_of(ticket_id) == ["breached"]
    events = await event_times(ticket_id)
    breach = [at for kind, at in events if kind == "ticket.sla"]
    rule_change = [at for kind, at in events if kind == "ticket.updated"]
    assert len(breach) >= 1
    assert rule_change == [breach[-1]]
