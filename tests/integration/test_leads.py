"""Leads: edits, conversion, the public web form, the Leads.csv import and scopes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from app.accounts.tables import Account
from app.audit.tables import AuditLog
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.errors import FieldError
from app.events.tables import Event
from app.imports.service import run_import
from app.leads.service import convert_lead, create_lead, update_lead
from app.leads.tables import Lead, LeadActivity, WebFormSettings
from app.leads.webform_settings import save_settings
from app.merge import Edit
from app.workflows.jobs import close_queue
from tests.browserless import Session
from tests.conftest import datasets_dir
from tests.factories import make_pipeline, make_team, make_user, unique
from tests.servers import WebServer, web_server

WEB_FORM_LIMIT = 4


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server({"CRM_WEBFORM_RATE_LIMIT": str(WEB_FORM_LIMIT)}) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def client(server: WebServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that services open to queue rescoring."""
    yield
    await close_queue()


@pytest_asyncio.fixture(loop_scope="session")
async def form_questions() -> AsyncIterator[None]:
    """Ask the web form's visitors about budget and timeline, for one test."""
    await save_settings(
        {
            "source": "Web form",
            "fields": ["name", "company"],
            "questions": "Budget\nTimeline",
        },
        None,
    )
    yield
    await WebFormSettings.delete(force=True)


async def lead_row(lead_id: int) -> dict:
    row = await Lead.select().where(Lead.id == lead_id).first()
    assert row is not None
    return row


async def test_create_and_update_lead_records_events() -> None:
    user = await make_user("sales_manager")
    lead_id = await create_lead(
        {"name": "Ada Byron", "email": "Ada@Example.com", "source": "Reference"},
        user.id,
        answers={"Budget": "Large", "Timeline": "  "},
    )

    created = await lead_row(lead_id)
    result = await update_lead(
        lead_id, {"status": Edit("new", "working")}, user.id, created["version"]
    )
    updated = await lead_row(lead_id)
    events = await Event.select(Event.kind).where(
        (Event.record_type == "lead") & (Event.record_id == lead_id)
    )
    audits = await AuditLog.select(AuditLog.action).where(
        (AuditLog.record_type == "lead") & (AuditLog.record_id == lead_id)
    )

    assert created["email"] == "ada@example.com"
    assert created["owner"] == user.id
    assert created["answers"] in ({"Budget": "Large"}, '{"Budget": "Large"}')
    assert result.applied == {"status": ["new", "working"]}
    assert updated["status"] == "working"
    assert updated["version"] == created["version"] + 1
    assert [event["kind"] for event in events] == ["lead.created", "lead.updated"]
    assert len(audits) == 2


async def test_update_lead_reports_conflicting_field() -> None:
    lead_id = await create_lead({"name": unique("Lead")}, None)
    await update_lead(lead_id, {"company": Edit("", "First Ltd")}, None)

    result = await update_lead(lead_id, {"company": Edit("", "Second Ltd")}, None)

    assert result.applied == {}
    assert [conflict.field for conflict in result.conflicts] == ["company"]
    assert (await lead_row(lead_id))["company"] == "First Ltd"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"name": "", "email": ""}, "name"),
        ({"email": "not-an-address"}, "email"),
        ({"name": "X", "status": "won"}, "status"),
        ({"name": "X", "owner": "999999"}, "owner"),
    ],
)
async def test_create_lead_rejects_invalid_value(values: dict, field: str) -> None:
    with pytest.raises(FieldError) as raised:
        await create_lead(values, None)

    assert raised.value.field == field


async def test_convert_lead_links_contact_account_and_deal() -> None:
    pipeline = await make_pipeline()
    user = await make_user("sales_manager")
    company = unique("Convert Co")
    lead_id = await create_lead(
        {
            "name": "Grace Hopper",
            "email": f"{uuid.uuid4().hex[:8]}@navy.example",
            "company": company,
        },
        user.id,
    )

    created = await convert_lead(
        lead_id,
        {"stage": str(pipeline["stages"][1]), "amount": "2500", "deal_name": ""},
        user.id,
    )
    lead = await lead_row(lead_id)
    contact = await Contact.select().where(Contact.id == created["contact"]).first()
    account = await Account.select().where(Account.id == created["account"]).first()
    deal = await Deal.select().where(Deal.id == created["deal"]).first()
    history = await Event.select(Event.kind).where(
        (Event.record_type == "lead") & (Event.record_id == lead_id)
    )

    assert lead["status"] == "converted"
    assert lead["converted_contact"] == created["contact"]
    assert lead["converted_account"] == created["account"]
    assert lead["converted_deal"] == created["deal"]
    assert lead["closed_at"] is not None
    assert contact["first_name"] == "Grace"
    assert contact["last_name"] == "Hopper"
    assert contact["account"] == created["account"]
    assert account["name"] == company
    assert deal["name"] == company
    assert deal["pipeline"] == pipeline["id"]
    assert deal["account"] == created["account"]
    assert deal["contact"] == created["contact"]
    assert str(deal["amount"]) == "2500.00"
    assert [row["kind"] for row in history] == ["lead.created", "lead.converted"]


async def test_failed_conversion_writes_nothing() -> None:
    pipeline = await make_pipeline()
    company = unique("Half Co")
    email = f"{uuid.uuid4().hex[:8]}@half.example"
    lead_id = await create_lead(
        {"name": "Half Way", "email": email, "company": company}, None
    )

    with pytest.raises(FieldError) as raised:
        # The amount fails only once the account and contact are inserted.
        await convert_lead(
            lead_id, {"stage": str(pipeline["stages"][0]), "amount": "lots"}, None
        )

    assert raised.value.field == "amount"
    assert (await lead_row(lead_id))["status"] == "new"
    assert not await Account.exists().where(Account.name == company)
    assert not await Contact.exists().where(Contact.email == email)


async def test_converted_lead_cannot_convert_again() -> None:
    pipeline = await make_pipeline()
    lead_id = await create_lead({"name": "Once Only"}, None)
    await convert_lead(lead_id, {"stage": str(pipeline["stages"][0])}, None)

    with pytest.raises(FieldError) as raised:
        await convert_lead(lead_id, {"stage": str(pipeline["stages"][0])}, None)

    assert raised.value.field == "status"


async def test_web_form_creates_lead_with_answers(
    client: httpx.AsyncClient,
) -> None:
    email = f"{uuid.uuid4().hex[:10]}@form.example"

    page = await client.get("/forms/lead")
    response = await client.post(
        "/forms/lead",
        data={
            "name": "Form Person",
            "email": email,
            "company": "Form Co",
            "source": "Web form",
            "answer.What matters most to you": "Medium",
            "website": "",
        },
        headers={"x-forwarded-for": "198.51.100.10"},
    )
    lead = await Lead.select().where(Lead.email == email).first()

    assert page.status_code == 200
    assert 'name="website"' in page.text
    assert response.status_code == 200
    assert "Thank you" in response.text
    assert lead is not None
    assert lead["source"] == "Web form"
    answers = lead["answers"]
    if isinstance(answers, str):
        answers = msgspec.json.decode(answers)
    assert answers == {"What matters most to you": "Medium"}
    activities = await LeadActivity.select(
        LeadActivity.kind, LeadActivity.detail
    ).where(LeadActivity.lead == lead["id"])
    assert [row["kind"] for row in activities] == ["form_submitted"]
    # The first submission lists what was sent, like a repeated one.
    detail = activities[0]["detail"]
    assert "name: Form Person" in detail
    assert "company: Form Co" in detail
    assert "What matters most to you: Medium" in detail
    assert "source:" not in detail


async def test_web_form_honeypot_stores_nothing(client: httpx.AsyncClient) -> None:
    email = f"{uuid.uuid4().hex[:10]}@bot.example"

    response = await client.post(
        "/forms/lead",
        data={"name": "Bot", "email": email, "website": "http://spam.example"},
    )

    assert response.status_code == 200
    assert "Thank you" in response.text
    assert not await Lead.exists().where(Lead.email == email)


async def test_web_form_names_invalid_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/forms/lead", data={"name": "No Mail", "email": "nope"}
    )

    assert response.status_code == 422
    assert 'data-field="email"' in response.text
    assert "not a valid email address" in response.text


async def test_web_form_rate_limit_per_address(server: WebServer) -> None:
    # A fresh address per run; the server trusts X-Forwarded-For from loopback.
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    codes = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for number in range(WEB_FORM_LIMIT + 2):
            response = await http.post(
                "/forms/lead",
                data={"email": f"{uuid.uuid4().hex[:8]}.{number}@rate.example"},
                headers={"x-forwarded-for": address},
            )
            codes.append(response.status_code)
        other = await http.post(
            "/forms/lead",
            data={"email": f"{uuid.uuid4().hex[:8]}@other.example"},
            headers={"x-forwarded-for": "192.0.2.77"},
        )

    assert codes == [200] * WEB_FORM_LIMIT + [429, 429]
    assert other.status_code == 200


async def test_import_leads_csv_slice(tmp_path: Path) -> None:
    source = datasets_dir("leads", "Leads.csv")
    lines = source.read_text(encoding="utf-8").splitlines()
    sliced = tmp_path / "Leads.csv"
    sliced.write_text("\n".join(lines[:201]) + "\n", encoding="utf-8")

    report = await run_import("leads", [sliced])
    again = await run_import("leads", [sliced])
    rows = await Lead.raw(
        "SELECT status, source, answers::text AS answers FROM lead "
        "WHERE external_key LIKE 'leads:%' ORDER BY id"
    )
    first = lines[1].split(",")

    assert report.errors == []
    assert report.counts["lead"].created == 200
    assert again.counts["lead"].created == 0
    assert len(rows) >= 200
    assert {row["status"] for row in rows} == {"converted", "unqualified"}
    assert not any('"Select"' in row["answers"] for row in rows)
    imported = (
        await Lead.select().where(Lead.external_key == f"leads:{first[0]}").first()
    )
    assert imported is not None
    assert imported["name"] == f"Lead {first[1]}"
    assert imported["source"] == first[3]


async def test_lead_pages_follow_scopes(server: WebServer) -> None:
    team = await make_team()
    other_team = await make_team()
    rep = await make_user("sales_rep", team=team)
    colleague = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    agent = await make_user("support_agent", team=team)
    own = await create_lead({"name": unique("Own lead")}, rep.id)
    teams = await create_lead({"name": unique("Team lead")}, colleague.id)
    other = await create_lead({"name": unique("Other lead")}, outsider.id)

    session = Session(server.url)
    support = Session(server.url)
    try:
        await session.sign_in(rep.email)
        await support.sign_in(agent.email)
        listed = await session.get("/leads?size=200&order=newest")
        own_page = await session.get(f"/leads/{own}")
        team_page = await session.get(f"/leads/{teams}")
        team_form = await session.get(f"/leads/{teams}/form")
        other_page = await session.get(f"/leads/{other}")
        own_edit = await session.post(
            f"/leads/{own}", {"company": "Edited Co", "base_company": ""}
        )
        team_edit = await session.post(
            f"/leads/{teams}", {"company": "Edited Co", "base_company": ""}
        )
        support_list = await support.get("/leads")
        support_page = await support.get(f"/leads/{own}")
    finally:
        await session.close()
        await support.close()

    assert listed.status_code == 200
    assert f'href="/leads/{own}"' in listed.text
    assert f'href="/leads/{teams}"' in listed.text
    assert f'href="/leads/{other}"' not in listed.text
    assert own_page.status_code == 200
    assert team_page.status_code == 200
    assert "view this lead but not edit it" in team_page.text
    assert team_form.status_code == 403
    assert other_page.status_code == 404
    assert own_edit.status_code == 200
    assert (await lead_row(own))["company"] == "Edited Co"
    assert team_edit.status_code == 403
    assert (await lead_row(teams))["company"] == ""
    assert support_list.status_code == 403
    assert support_page.status_code == 403


async def test_second_conversion_page_names_reason(server: WebServer) -> None:
    pipeline = await make_pipeline()
    manager = await make_user("sales_manager")
    lead_id = await create_lead({"name": unique("Twice")}, manager.id)
    stage = str(pipeline["stages"][0])
    session = Session(server.url)
    try:
        await session.sign_in(manager.email)
        first = await session.post(f"/leads/{lead_id}/convert", {"stage": stage})
        second = await session.post(f"/leads/{lead_id}/convert", {"stage": stage})
    finally:
        await session.close()

    assert first.status_code in (200, 302, 303)
    assert second.status_code == 422
    assert 'data-field="status"' in second.text
    assert "converted" in second.text


async def test_lead_list_rejects_unknown_filter(server: WebServer) -> None:
    user = await make_user("sales_manager")
    session = Session(server.url)
    try:
        await session.sign_in(user.email)
        response = await session.get("/leads?status=won")
    finally:
        await session.close()

    assert response.status_code == 400
    assert "won" in response.text


async def submit_web_form(
    http: httpx.AsyncClient, address: str, **fields: str
) -> httpx.Response:
    return await http.post(
        "/forms/lead", data=fields, headers={"x-forwarded-for": address}
    )


def decoded(answers: Any) -> dict:
    return msgspec.json.decode(answers) if isinstance(answers, str) else answers


async def test_web_form_same_email_adds_to_open_lead(
    client: httpx.AsyncClient, form_questions: None
) -> None:
    user = await make_user("sales_manager")
    email = f"{uuid.uuid4().hex[:10]}@again.example"
    lead_id = await create_lead(
        {"name": "Edited Name", "email": email},
        user.id,
        answers={"Budget": "Small"},
    )
    before = await lead_row(lead_id)

    response = await submit_web_form(
        client,
        "198.51.100.21",
        **{
            "name": "Form Name",
            "email": f"  {email.upper()} ",
            "company": "Form Co",
            "answer.Budget": "Large",
            "answer.Timeline": "This quarter",
            "website": "",
        },
    )
    leads = await Lead.select(Lead.id).where(Lead.email == email)
    after = await lead_row(lead_id)
    activities = await LeadActivity.select(
        LeadActivity.kind, LeadActivity.detail
    ).where(LeadActivity.lead == lead_id)
    events = (
        await Event.select(Event.kind, Event.topics)
        .where((Event.record_type == "lead") & (Event.record_id == lead_id))
        .order_by(Event.id)
    )

    assert response.status_code == 200
    assert [row["id"] for row in leads] == [lead_id]
    # A value the user set stays; an empty field is filled.
    assert after["name"] == "Edited Name"
    assert after["company"] == "Form Co"
    assert after["owner"] == user.id
    assert decoded(after["answers"]) == {"Budget": "Small", "Timeline": "This quarter"}
    assert after["version"] == before["version"] + 1
    assert [row["kind"] for row in activities] == ["form_submitted"]
    detail = activities[0]["detail"]
    assert "name: Form Name" in detail
    assert "Budget: Large" in detail
    assert "Timeline: This quarter" in detail
    kinds = [event["kind"] for event in events]
    assert kinds == ["lead.created", "lead.updated", "lead.activity_added"]
    assert f"lead:{lead_id}" in events[-1]["topics"]


async def test_web_form_skips_converted_lead(client: httpx.AsyncClient) -> None:
    email = f"{uuid.uuid4().hex[:10]}@converted.example"
    converted_id = await create_lead({"name": "Old Customer", "email": email}, None)
    await Lead.update({Lead.status: "converted"}).where(Lead.id == converted_id)

    response = await submit_web_form(
        client, "198.51.100.22", name="Returning", email=email, website=""
    )
    leads = await Lead.select(Lead.id, Lead.name).where(Lead.email == email)

    assert response.status_code == 200
    assert len(leads) == 2
    assert {row["name"] for row in leads} == {"Old Customer", "Returning"}


@pytest.mark.parametrize("status", ["unqualified", "converted"])
async def test_web_form_skips_closed_lead(
    client: httpx.AsyncClient, status: str
) -> None:
    email = f"{uuid.uuid4().hex[:10]}@closed.example"
    closed_id = await create_lead({"name": "Ruled Out", "email": email}, None)
    open_id = await create_lead({"name": "Still Open", "email": email}, None)
    newer_closed_id = await create_lead({"name": "Newer Closed", "email": email}, None)
    await Lead.update({Lead.status: status}).where(
        Lead.id.is_in([closed_id, newer_closed_id])
    )

    first = await submit_web_form(
        client, "198.51.100.25", name="Returning", email=email, website=""
    )
    await Lead.update({Lead.status: status}).where(Lead.id == open_id)
    second = await submit_web_form(
        client, "198.51.100.26", name="Back Again", email=email, website=""
    )
    leads = (
        await Lead.select(Lead.id, Lead.name, Lead.status)
        .where(Lead.email == email)
        .order_by(Lead.id)
    )
    closed_activities = await LeadActivity.count().where(
        LeadActivity.lead.is_in([closed_id, newer_closed_id])
    )
    open_activities = await LeadActivity.select(LeadActivity.detail).where(
        LeadActivity.lead == open_id
    )

    assert first.status_code == 200
    assert second.status_code == 200
    # The first submission goes to the open lead, not the older closed one.
    assert [row["detail"] for row in open_activities] == ["name: Returning"]
    # Once that lead is closed too, the next submission is a new open lead.
    assert len(leads) == 4
    new_lead = leads[-1]
    assert new_lead["id"] not in (closed_id, open_id, newer_closed_id)
    assert new_lead["name"] == "Back Again"
    assert new_lead["status"] == "new"
    assert closed_activities == 0


async def test_web_form_concurrent_same_email_one_lead(
    client: httpx.AsyncClient,
) -> None:
    email = f"{uuid.uuid4().hex[:10]}@twice.example"

    responses = await asyncio.gather(
        submit_web_form(client, "198.51.100.23", name="Twice", email=email, website=""),
        submit_web_form(
            client,
            "198.51.100.24",
            name="Twice",
            email=email.upper(),
            company="Twice Co",
            website="",
        ),
    )
    leads = await Lead.raw(
        "SELECT id, company FROM lead WHERE lower(email) = {}", email
    )
    activities = await LeadActivity.count().where(
        LeadActivity.lead.is_in([row["id"] for row in leads])
    )

    assert [response.status_code for response in responses] == [200, 200]
    assert len(leads) == 1
    assert leads[0]["company"] == "Twice Co"
    assert activities == 2
