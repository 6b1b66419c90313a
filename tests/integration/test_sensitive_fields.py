"""Fields marked sensitive on the admin page: a real arq worker encrypts the
stored values, pages and the API keep showing plaintext, new writes are
encrypted, unmarking restores plaintext, and key rotation covers them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.access.tables import Role
from app.accounts.queries import get_account
from app.accounts.tables import Account
from app.api.keys import create_key
from app.auth.tables import TeamMember
from app.contacts.queries import get_contact
from app.contacts.service import create_contact
from app.contacts.tables import Contact
from app.encryption import marked
from app.encryption.columns import set_keyring
from app.encryption.keyring import Keyring, is_encrypted, key_id_of, new_key_entry
from app.encryption.marking import run_field_job, set_sensitive
from app.encryption.rotation import count_by_key, rotate_all
from app.encryption.tables import SensitiveField
from app.imports.writer import upsert
from app.leads.queries import LeadFilter, search_leads
from app.leads.service import create_lead
from app.merge import Edit
from app.pagination import PageRequest
from app.tickets.queries import get_ticket
from app.tickets.service import create_ticket, update_ticket
from app.webhooks.tables import OutboxMessage
from app.workflows.placeholders import HIDDEN
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import WorkflowRule
from tests.browserless import Session
from tests.factories import contains, make_team, make_user, unique
from tests.servers import web_server, worker_process
from workers.connection import open_queue
from workers.sensitive import resume_sensitive_fields

pytestmark = pytest.mark.asyncio(loop_scope="session")

HTML = {"accept": "text/html"}
WRITE_ALL = {"account": "write", "lead": "write"}
JOB_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server():
    with web_server() as running, worker_process():
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def raw() -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection, which reads stored values as they are."""
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        yield connection
    finally:
        await connection.close()


async def stored(raw: asyncpg.Connection, table: str, column: str, row_id: int) -> str:
    return await raw.fetchval(f"SELECT {column} FROM {table} WHERE id = $1", row_id)


async def set_field(session: Session, field: str, sensitive: bool) -> None:
    response = await session.post(
        "/admin/sensitive-fields",
        data={"field": field, "sensitive": "on" if sensitive else "off"},
    )
    assert response.status_code in (200, 302, 303), response.text


async def wait_for_state(table: str, column: str, state: str | None) -> None:
    """Wait until the job brings the field to ``state`` (None: unmarked)."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        row = (
            await SensitiveField.select()
            .where(
                (SensitiveField.table_name == table)
                & (SensitiveField.column_name == column)
            )
            .first()
        )
        current = row["state"] if row else None
        if current == state:
            await marked.refresh()
            return
        if row is not None:
            assert row["error"] == "", row["error"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{table}.{column} did not reach {state} in {JOB_TIMEOUT} s")


async def make_account(**values: Any) -> int:
    rows = await Account.insert(Account(name=unique("Account"), **values)).returning(
        Account.id
    )
    return rows[0]["id"]


async def admin(server) -> tuple[Session, int]:
    user = await make_user(role="admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    return session, user.id


async def test_marked_field_encrypts_and_restores(server, raw) -> None:
    session, admin_id = await admin(server)
    city = f"Ghent {uuid.uuid4().hex[:8]}"
    account_id = await make_account(city=city, phone="+32 9 555 0101")
    token = (await create_key(admin_id, unique("Key"), WRITE_ALL, None)).token
    bearer = {"authorization": f"Bearer {token}"}

    page = await session.get("/admin/sensitive-fields", headers=HTML)
    assert page.status_code == 200
    assert "account.city" in page.text
    assert "no longer match" in page.text

    await set_field(session, "account.city", True)
    await wait_for_state("account", "city", marked.ENCRYPTED)

    existing = await stored(raw, "account", "city", account_id)
    assert is_encrypted(existing)
    assert city not in existing
    # Another column of the row is left alone.
    assert await stored(raw, "account", "phone", account_id) == "+32 9 555 0101"
    shown = await session.get(f"/accounts/{account_id}", headers=HTML)
    assert shown.status_code == 200
    assert city in shown.text
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
        fetched = await api.get(f"/api/v1/accounts/{account_id}", headers=bearer)
        assert fetched.status_code == 200
        assert city in fetched.text
        assert "enc1:" not in fetched.text

        # A new account through the API, and an edit through the page.
        api_city = f"Leuven {uuid.uuid4().hex[:8]}"
        created = await api.post(
            "/api/v1/accounts",
            json={"name": unique("Account"), "city": api_city},
            headers=bearer,
        )
        assert created.status_code == 201, created.text
    created_id = created.json()["id"]
    assert is_encrypted(await stored(raw, "account", "city", created_id))
    assert (await get_account(created_id))["city"] == api_city

    edited_city = f"Bruges {uuid.uuid4().hex[:8]}"
    edited = await session.post(
        f"/accounts/{account_id}", data={"city": edited_city, "base_city": city}
    )
    assert edited.status_code in (200, 302, 303), edited.text
    assert is_encrypted(await stored(raw, "account", "city", account_id))
    assert (await get_account(account_id))["city"] == edited_city

    # The audit log shows that the city changed, never the city.
    audit = await raw.fetchval(
        "SELECT string_agg(changes::text, ' ') FROM audit_log "
        "WHERE record_type = 'account' AND record_id = ANY($1::int[])",
        [account_id, created_id],
    )
    assert "city" in audit
    assert edited_city not in audit
    assert api_city not in audit
    assert "enc1:" not in audit

    # Rotation re-encrypts the marked column under the new key.
    test_entry = os.environ["CRM_ENCRYPTION_KEYS"]
    new_entry = new_key_entry("fieldnew")
    try:
        left = await rotate_all(Keyring.parse(f"{new_entry},{test_entry}"))
        assert left["account.city"] == 0
        assert key_id_of(await stored(raw, "account", "city", account_id)) == (
            "fieldnew"
        )
        set_keyring(Keyring.parse(f"{new_entry},{test_entry}"))
        assert (await get_account(account_id))["city"] == edited_city
        counts = await count_by_key()
        assert set(counts["account.city"]) == {"fieldnew"}
    finally:
        await rotate_all(Keyring.parse(f"{test_entry},{new_entry}"))
        set_keyring(None)
    assert key_id_of(await stored(raw, "account", "city", account_id)) == "test"

    await set_field(session, "account.city", False)
    await wait_for_state("account", "city", None)
    assert await stored(raw, "account", "city", account_id) == edited_city
    assert await stored(raw, "account", "city", created_id) == api_city
    assert "account.city" not in await count_by_key()

    after = f"Mons {uuid.uuid4().hex[:8]}"
    await session.post(
        f"/accounts/{account_id}", data={"city": after, "base_city": edited_city}
    )
    assert await stored(raw, "account", "city", account_id) == after
    await session.close()


async def test_search_skips_encrypted_company(server, raw) -> None:
    session, admin_id = await admin(server)
    company = f"Umbrella {uuid.uuid4().hex[:8]}"
    lead_id = await create_lead({"name": unique("Lead"), "company": company}, admin_id)
    paging = PageRequest(path="/leads")

    found = await search_leads(LeadFilter(search=company), paging)
    assert [row["id"] for row in found.rows] == [lead_id]

    await set_field(session, "lead.company", True)
    await wait_for_state("lead", "company", marked.ENCRYPTED)
    assert is_encrypted(await stored(raw, "lead", "company", lead_id))

    hidden = await search_leads(LeadFilter(search=company), paging)
    assert hidden.rows == []
    listed = await session.get("/leads", headers=HTML, params={"q": company})
    assert listed.status_code == 200
    assert f"/leads/{lead_id}" not in listed.text
    assert "the company is encrypted" in listed.text
    lead_page = await session.get(f"/leads/{lead_id}", headers=HTML)
    assert company in lead_page.text

    await set_field(session, "lead.company", False)
    await wait_for_state("lead", "company", None)
    assert await stored(raw, "lead", "company", lead_id) == company
    found_again = await search_leads(LeadFilter(search=company), paging)
    assert [row["id"] for row in found_again.rows] == [lead_id]
    await session.close()


async def test_field_not_markable_is_rejected(server) -> None:
    session, _ = await admin(server)
    response = await session.post(
        "/admin/sensitive-fields", data={"field": "account.name", "sensitive": "on"}
    )
    assert response.status_code == 422
    assert "account.name" in response.text
    assert not await SensitiveField.exists().where(SensitiveField.column_name == "name")
    await session.close()


async def test_stalled_job_is_queued_again(server, raw) -> None:
    """A field left encrypting by a lost job is picked up by the resume job."""
    session, admin_id = await admin(server)
    website = f"https://{uuid.uuid4().hex[:8]}.example"
    account_id = await make_account(website=website)
    await SensitiveField.insert(
        SensitiveField(
            table_name="account",
            column_name="website",
            state=marked.ENCRYPTING,
            changed_by=admin_id,
            updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
        )
    )
    queue = await open_queue(os.environ["REDIS_URL"], os.environ["REDIS_PREFIX"])
    try:
        first = await resume_sensitive_fields({"redis": queue})
        again = await resume_sensitive_fields({"redis": queue})
    finally:
        await queue.aclose()

    assert first == 1
    # The same stall is not queued twice.
    assert again == 0
    await wait_for_state("account", "website", marked.ENCRYPTED)
    assert is_encrypted(await stored(raw, "account", "website", account_id))
    assert (await get_account(account_id))["website"] == website

    await set_field(session, "account.website", False)
    await wait_for_state("account", "website", None)
    assert await stored(raw, "account", "website", account_id) == website
    await session.close()


async def test_write_paths_encrypt_marked_fields(raw) -> None:
    """Imports, the create services and workflow actions write marked fields
    as ciphertext."""
    admin_id = (await make_user(role="admin")).id
    for field in ("contact.title", "ticket.description"):
        assert await set_sensitive(field, True, admin_id) == marked.ENCRYPTING
    try:
        title = f"Chief {uuid.uuid4().hex[:8]}"
        imported = await upsert(
            Contact,
            [{"external_key": f"sensitive:{uuid.uuid4().hex}", "title": title}],
        )
        contact_id = await create_contact(
            {"first_name": "Ada", "title": title}, admin_id
        )
        description = f"Fan noise {uuid.uuid4().hex[:8]}"
        ticket_id = await create_ticket(
            {"subject": unique("Ticket"), "description": description}, admin_id
        )

        # A workflow action writes through the same merge as the pages.
        marker = uuid.uuid4().hex[:8]
        escalated = f"Escalated {marker}"
        rule_id = await save_rule(
            None,
            "ticket",
            unique("Rule"),
            {
                "trigger": {
                    "kind": "field_changed",
                    "field": "priority",
                    "to_value": "urgent",
                },
                "conditions": {
                    "type": "group",
                    "match": "all",
                    "items": [
                        {
                            "type": "condition",
                            "field": "subject",
                            "op": "contains",
                            "value": marker,
                        }
                    ],
                },
                "actions": [
                    {"kind": "set_field", "field": "description", "value": escalated}
                ],
            },
            admin_id,
        )
        await set_enabled(rule_id, True, admin_id)
        try:
            ruled_id = await create_ticket({"subject": f"Hot {marker}"}, admin_id)
            await update_ticket(ruled_id, {"priority": Edit("medium", "urgent")}, None)
        finally:
            await set_enabled(rule_id, False, admin_id)
        assert is_encrypted(await stored(raw, "ticket", "description", ruled_id))
        assert (await get_ticket(ruled_id))["description"] == escalated

        for row_id in (imported[0]["id"], contact_id):
            assert is_encrypted(await stored(raw, "contact", "title", row_id))
            assert (await get_contact(row_id))["title"] == title
        assert is_encrypted(await stored(raw, "ticket", "description", ticket_id))
        assert (await get_ticket(ticket_id))["description"] == description
    finally:
        for field in ("contact.title", "ticket.description"):
            await set_sensitive(field, False, admin_id)
            table, _, column = field.partition(".")
            result = await run_field_job(table, column, settle_seconds=0)
            assert result["state"] == "plaintext"
    assert await stored(raw, "contact", "title", contact_id) == title
    assert await stored(raw, "ticket", "description", ticket_id) == description


async def test_notify_hides_marked_field_by_role(raw) -> None:
    """A marked field in a rule's notification follows the recipient's
    field rules: decrypted for a user who may read it, hidden otherwise."""
    admin = await make_user(role="admin")
    marker = uuid.uuid4().hex[:8]
    role = Role(
        name=f"description_blind_{marker}",
        label="Description blind",
        permissions={"ticket": {"read": "all"}},
        field_rules={"ticket": {"description": "hidden"}},
    )
    await role.save()
    blind = await make_user(role=role.name)
    team_id = await make_team()
    for user in (admin, blind):
        await TeamMember.insert(TeamMember(team=team_id, user=user.id))
    assert await set_sensitive("ticket.description", True, admin.id) == (
        marked.ENCRYPTING
    )
    rule_id = await save_rule(
        None,
        "ticket",
        unique("Rule"),
        {
            "trigger": {"kind": "created"},
            "conditions": contains("subject", marker),
            "actions": [
                {"kind": "notify", "team_id": team_id, "body": "{record.description}"}
            ],
        },
        admin.id,
    )
    await set_enabled(rule_id, True, admin.id)
    description = f"Card number {marker}"
    try:
        ticket_id = await create_ticket(
            {"subject": f"Billing {marker}", "description": description}, admin.id
        )
        assert is_encrypted(await stored(raw, "ticket", "description", ticket_id))

        rows = await OutboxMessage.select(
            OutboxMessage.id, OutboxMessage.payload
        ).where(
            (OutboxMessage.kind == "notify")
            & OutboxMessage.payload.like(f'%"/tickets/{ticket_id}"%')
        )
        messages = {}
        for row in rows:
            payload = json.loads(row["payload"])
            for user_id in payload["user_ids"]:
                messages[user_id] = payload["message"]
        assert messages == {admin.id: description, blind.id: HIDDEN}
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
        await set_sensitive("ticket.description", False, admin.id)
        result = await run_field_job("ticket", "description", settle_seconds=0)
        assert result["state"] == "plaintext"
