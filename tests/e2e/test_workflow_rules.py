"""Workflow rules end to end: an admin builds a rule in the browser, a ticket
arrives as urgent mail through the inbound email endpoint, and agents see
the result live.

A real web server and a real arq worker run. Each agent's page is a
separate browser context, signed in as that agent.
"""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid

import httpx
import pytest

from app.api.keys import create_key
from app.sla.calendars import parse_hours_text
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.tickets.tables import Ticket
from app.workflows.tables import WorkflowRule
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_team, make_user, unique
from tests.servers import worker_process

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(120),
]

ALWAYS_OPEN = "\n".join(
    f"{day} 00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)
CARD = "#ticket-{} "
TOAST = "#toasts [data-notification]"


async def add_row(page, kind: str) -> int:
    """Click "Add condition" or "Add action" and return the new row's number."""
    container = f'[data-rows="{kind}"]'
    before = await page.locator(f"{container} [data-row]").count()
    await page.click(f'button[data-add-row="{kind}"]')
    await wait_until(
        page,
        "([selector, count]) => document.querySelectorAll(selector).length > count",
        [f"{container} [data-row]", before],
    )
    names = await page.eval_on_selector_all(
        f"{container} [data-row] select:first-of-type",
        "(elements) => elements.map((element) => element.name)",
    )
    return int(names[-1].split(".")[1])


async def support_team() -> tuple[int, str]:
    name = unique("Support")
    team_id = await make_team(name)
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Always"), time_zone="UTC", hours=parse_hours_text(ALWAYS_OPEN)
        ),
        None,
    )
    await save_policy(
        None,
        PolicyInput(
            name=unique("Urgent support"),
            calendar_id=calendar_id,
            team_id=team_id,
            targets={"urgent": {"first_response": 30, "resolution": 240}},
        ),
        None,
    )
    return team_id, name


async def build_rule(page, team_name: str, rule_name: str) -> int:
    """Build and enable the urgent-ticket rule in the builder, and return its id."""
    await page.goto("/admin/workflows/new?object_type=ticket")
    await page.fill("input[name=name]", rule_name)
    await page.select_option("select[name='trigger.kind']", "created")

    condition = await add_row(page, "condition")
    prefix = f"condition.{condition}"
    await page.select_option(f"select[name='{prefix}.field']", "priority")
    await page.select_option(f"select[name='{prefix}.op']", "equals")
    await page.fill(f"input[name='{prefix}.value']", "urgent")

    # A new rule's page starts with one empty action row.
    assign = 0
    await page.select_option(f"select[name='action.{assign}.kind']", "assign")
    await page.select_option(f"select[name='action.{assign}.team_id']", label=team_name)
    notify = await add_row(page, "action")
    await page.select_option(f"select[name='action.{notify}.kind']", "notify")
    await page.select_option(f"select[name='action.{notify}.team_id']", label=team_name)
    await page.fill(
        f"textarea[name='action.{notify}.body']", "Urgent: {record.subject}"
    )

    await page.click("#save-rule")
    await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
    rule_id = int(page.url.rstrip("/").split("/")[-1])
    await page.click("#toggle-rule")
    await page.wait_for_selector("text=Enabled")
    return rule_id


def urgent_mail(subject: str) -> bytes:
    """Return a customer's raw message that asks for urgent handling."""
    message = EmailMessage()
    message["From"] = "Casey Customer <casey@example.org>"
    message["To"] = "support@switchboard.test"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message["Priority"] = "urgent"
    message["X-Priority"] = "1 (Highest)"
    message.set_content("Nobody can pay since this morning.")
    return message.as_bytes()


async def test_urgent_mail_ticket_assigned_live(browser, server) -> None:
    team_id, team_name = await support_team()
    first = await make_user("support_agent", name=unique("Ada"), team=team_id)
    second = await make_user("support_agent", name=unique("Bob"), team=team_id)
    admin = await make_user("admin")
    # The mail gateway's key belongs to an intake user outside any team.
    intake = await make_user("admin", name=unique("Intake"))
    issued = await create_key(
        intake.id, unique("Intake key"), {"ticket": "write"}, None
    )
    subject = f"Checkout down {uuid.uuid4().hex[:8]}"
    rule_id = None

    with worker_process():
        admin_context, admin_page = await signed_in_page(browser, server, admin.email)
        first_context, first_page = await signed_in_page(browser, server, first.email)
        second_context, second_page = await signed_in_page(
            browser, server, second.email
        )
        try:
            rule_id = await build_rule(admin_page, team_name, unique("Urgent"))
            stored = (
                await WorkflowRule.select(WorkflowRule.enabled)
                .where(WorkflowRule.id == rule_id)
                .first()
            )
            assert stored["enabled"] is True

            # Round-robin in a new team starts with the member of lowest id.
            await first_page.goto(f"/tickets?person={first.id}")
            await second_page.goto("/tickets")
            await wait_live(first_page)
            await wait_live(second_page)

            async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
                sent = time.monotonic()
                response = await api.post(
                    "/api/v1/inbound/email",
                    content=urgent_mail(subject),
                    headers={
                        "authorization": f"Bearer {issued.token}",
                        "content-type": "message/rfc822",
                    },
                )
            assert response.status_code == 201, response.text
            assert response.json()["outcome"] == "created"
            ticket_id = response.json()["ticket_id"]
            card = CARD.format(ticket_id)

            await wait_until(
                first_page,
                "(selector) => document.querySelector(selector) !== null",
                card.strip(),
                timeout_ms=1_000,
            )
            shown_after = time.monotonic() - sent

            stored_ticket = (
                await Ticket.select(
                    Ticket.assignee, Ticket.team, Ticket.priority, Ticket.channel
                )
                .where(Ticket.id == ticket_id)
                .first()
            )
            assert stored_ticket["priority"] == "urgent"
            assert stored_ticket["channel"] == "email"
            assert stored_ticket["assignee"] == first.id
            assert stored_ticket["team"] == team_id
            assert shown_after < 1.0
            assignee_text = await first_page.text_content(card + ".assignee")
            assert first.name in assignee_text

            # The countdown ticks in the page: its text changes without a
            # request. A pushed card may replace it once in between, so the
            # check allows a few seconds rather than exactly one. Pushes
            # come over the open websocket, which is no new request.
            countdown = card + ".sla-countdown"
            requests: list[str] = []
            first_page.on("request", lambda request: requests.append(request.url))
            before = await first_page.text_content(countdown)
            await wait_until(
                first_page,
                "([selector, text]) => {"
                " const node = document.querySelector(selector);"
                " return node !== null && node.textContent !== text; }",
                [countdown.strip(), before],
                timeout_ms=3_000,
            )
            after = await first_page.text_content(countdown)
            assert requests == []
            assert before.startswith("First response in ")
            assert after.startswith("First response in ")
            state = await first_page.get_attribute(countdown, "data-sla-state")
            assert state == "ok"

            for page in (first_page, second_page):
                await wait_until(
                    page,
                    "(selector) => document.querySelector(selector) !== null",
                    TOAST,
                    timeout_ms=10_000,
                )
                toast = await page.text_content(TOAST)
                assert f"Urgent: {subject}" in toast
                link = await page.get_attribute(TOAST + " a", "href")
                assert link == f"/tickets/{ticket_id}"
            # The admin is not in the team, so no toast reaches their page.
            assert await admin_page.locator(TOAST).count() == 0
            # The other member's unfiltered board shows the ticket too.
            await wait_until(
                second_page,
                "(selector) => document.querySelector(selector) !== null",
                card.strip(),
            )
        finally:
            for context in (admin_context, first_context, second_context):
                await context.close()
            if rule_id is not None:
                await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
