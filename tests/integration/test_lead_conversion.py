"""Lead conversion: reusing a matching contact and account, and the converted
records' pages showing the lead they came from."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from app.accounts.tables import Account
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.errors import FieldError
from app.leads.conversion import find_matches
from app.leads.service import convert_lead, create_lead, record_activity
from app.leads.tables import Lead
from app.workflows.jobs import close_queue
from tests.browserless import Session
from tests.factories import make_pipeline, make_user, unique
from tests.servers import WebServer, web_server


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that services open to queue rescoring."""
    yield
    await close_queue()


async def make_account(name: str, domain: str | None = None) -> int:
    rows = await Account.insert(Account(name=name, domain=domain)).returning(Account.id)
    return rows[0]["id"]


async def make_contact(email: str, account: int | None = None) -> int:
    rows = await Contact.insert(
        Contact(first_name="Pat", last_name="Existing", email=email, account=account)
    ).returning(Contact.id)
    return rows[0]["id"]


async def lead_row(lead_id: int) -> dict:
    row = await Lead.select().where(Lead.id == lead_id).first()
    assert row is not None
    return row


def checked_value(page: str, name: str) -> str | None:
    """Return the value of the checked radio button named ``name``."""
    for tag in re.findall(r"<input[^>]*>", page):
        if f'name="{name}"' in tag and " checked" in tag:
            found = re.search(r'value="([^"]*)"', tag)
            return found.group(1) if found else None
    return None


async def test_conversion_page_reuses_matching_records(server: WebServer) -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example"
    company = unique("Acme")
    account_id = await make_account(company, domain=f"www-{domain}")
    contact_id = await make_contact(f"Pat@{domain.upper()}", account=account_id)
    pipeline = await make_pipeline()
    manager = await make_user("sales_manager")
    lead_id = await create_lead(
        {
            "name": "Pat Lead",
            "email": f"pat@{domain}",
            "company": f"  {company.upper()} ",
        },
        manager.id,
    )

    session = Session(server.url)
    try:
        await session.sign_in(manager.email)
        page = await session.get(f"/leads/{lead_id}")
        converted = await session.post(
            f"/leads/{lead_id}/convert",
            {
                "stage": str(pipeline["stages"][0]),
                "contact": str(contact_id),
                "account": str(account_id),
            },
            htmx=False,
        )
    finally:
        await session.close()

    lead = await lead_row(lead_id)
    deal = await Deal.select().where(Deal.id == lead["converted_deal"]).first()
    contacts_with_email = await Contact.count().where(
        Contact.email.ilike(f"pat@{domain}")
    )
    accounts_named = await Account.count().where(Account.name.ilike(company))
    assert page.status_code == 200
    assert checked_value(page.text, "contact") == str(contact_id)
    assert checked_value(page.text, "account") == str(account_id)
    assert converted.status_code in (302, 303)
    assert lead["status"] == "converted"
    assert lead["converted_contact"] == contact_id
    assert lead["converted_account"] == account_id
    assert deal is not None
    assert deal["contact"] == contact_id
    assert deal["account"] == account_id
    assert contacts_with_email == 1
    assert accounts_named == 1


async def test_matches_by_email_domain_not_free_mail() -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example"
    by_domain = await make_account(unique("Other name"), domain=domain)
    await make_account(unique("Mail host"), domain="gmail.com")

    company_lead = {"email": f"sam@{domain}", "company": ""}
    free_mail_lead = {"email": f"{uuid.uuid4().hex[:8]}@gmail.com", "company": ""}
    company_matches = await find_matches(company_lead)
    free_mail_matches = await find_matches(free_mail_lead)

    assert [row["id"] for row in company_matches.accounts] == [by_domain]
    assert company_matches.contacts == []
    assert free_mail_matches.accounts == []


async def test_reused_contact_brings_its_account() -> None:
    pipeline = await make_pipeline()
    domain = f"{uuid.uuid4().hex[:8]}.example"
    account_id = await make_account(unique("Contact's account"))
    contact_id = await make_contact(f"ann@{domain}", account=account_id)
    lead_id = await create_lead(
        {"name": "Ann Lead", "email": f"ann@{domain}", "company": unique("Other")},
        None,
    )
    accounts_before = await Account.count()

    result = await convert_lead(
        lead_id,
        {"stage": str(pipeline["stages"][0]), "contact": str(contact_id)},
        None,
    )

    deal = await Deal.select().where(Deal.id == result["deal"]).first()
    assert result["contact"] == contact_id
    assert result["account"] == account_id
    assert deal["account"] == account_id
    assert await Account.count() == accounts_before


async def test_conversion_rejects_unmatched_choice() -> None:
    pipeline = await make_pipeline()
    stranger = await make_contact(f"{uuid.uuid4().hex[:8]}@elsewhere.example")
    lead_id = await create_lead(
        {"name": "No Match", "email": f"{uuid.uuid4().hex[:8]}@lead.example"}, None
    )

    with pytest.raises(FieldError) as wrong_contact:
        await convert_lead(
            lead_id,
            {"stage": str(pipeline["stages"][0]), "contact": str(stranger)},
            None,
        )
    with pytest.raises(FieldError) as bad_account:
        await convert_lead(
            lead_id, {"stage": str(pipeline["stages"][0]), "account": "acme"}, None
        )

    assert wrong_contact.value.field == "contact"
    assert bad_account.value.field == "account"
    assert (await lead_row(lead_id))["status"] == "new"


async def test_converted_records_show_the_lead(server: WebServer) -> None:
    pipeline = await make_pipeline()
    manager = await make_user("sales_manager")
    source = unique("Partner site")
    lead_id = await create_lead(
        {
            "name": unique("Origin Lead"),
            "email": f"{uuid.uuid4().hex[:8]}@origin.example",
            "company": unique("Origin Co"),
            "source": source,
        },
        manager.id,
        answers={"Budget": "50k a year"},
        activity="form_submitted",
    )
    await record_activity(lead_id, "call", "Discussed pricing", manager.id)
    created = await convert_lead(
        lead_id, {"stage": str(pipeline["stages"][0])}, manager.id
    )
    pages = {
        "contact": f"/contacts/{created['contact']}",
        "account": f"/accounts/{created['account']}",
        "deal": f"/deals/{created['deal']}",
    }

    session = Session(server.url)
    try:
        await session.sign_in(manager.email)
        responses = {kind: await session.get(path) for kind, path in pages.items()}
    finally:
        await session.close()

    for kind, response in responses.items():
        text = response.text
        assert response.status_code == 200, kind
        assert f'id="{kind}-origin-leads"' in text, kind
        assert f'href="/leads/{lead_id}"' in text, kind
        assert source in text, kind
        assert "Budget" in text, kind
        assert "50k a year" in text, kind
        assert "Discussed pricing" in text, kind
        assert "Form submitted" in text, kind


async def test_converted_lead_page_and_second_conversion(server: WebServer) -> None:
    pipeline = await make_pipeline()
    manager = await make_user("sales_manager")
    lead_id = await create_lead(
        {"name": unique("Twice Lead"), "email": f"{uuid.uuid4().hex[:8]}@t.example"},
        manager.id,
    )
    created = await convert_lead(
        lead_id, {"stage": str(pipeline["stages"][0])}, manager.id
    )

    session = Session(server.url)
    try:
        await session.sign_in(manager.email)
        page = await session.get(f"/leads/{lead_id}")
        again = await session.post(
            f"/leads/{lead_id}/convert",
            {"stage": str(pipeline["stages"][0])},
            htmx=False,
        )
    finally:
        await session.close()

    section = re.search(rf'<section[^>]*id="lead-{lead_id}-convert"[^>]*>', page.text)
    assert section is not None
    assert "panel" not in section.group(0)
    assert again.status_code == 422
    assert (
        f"Lead {lead_id} is already converted (to contact {created['contact']}, "
        f"deal {created['deal']})."
    ) in again.text
