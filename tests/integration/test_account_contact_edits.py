"""Editing accounts and contacts through a real web server: merges,
conflicts, invalid values and the fragments pushed to their pages."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from app.accounts.tables import Account
from app.contacts.tables import Contact
from app.encryption.columns import decrypt_row
from app.events.tables import Event
from tests.browserless import Session
from tests.factories import make_user
from tests.live_frames import next_event, next_presence
from tests.servers import web_server

HTML = {"accept": "text/html"}

# The base copies of the account form's fields other than name, for an
# account that make_account() created with a name only.
ACCOUNT_BLANK = {
    "domain": "",
    "industry": "",
    "employees": "",
    "annual_revenue": "",
    "phone": "",
    "website": "",
    "city": "",
    "country": "",
    "owner": "",
}


@pytest.fixture(scope="module")
def server():
    # A small replay limit lets a test reach the fresh render with a few edits.
    with web_server({"CRM_REPLAY_LIMIT": "2"}) as running:
        yield running


def unique_tag() -> str:
    return uuid.uuid4().hex[:10]


async def make_account(name: str | None = None, **values: Any) -> int:
    account = Account(name=name or f"Account {unique_tag()}", **values)
    rows = await Account.insert(account).returning(Account.id)
    return rows[0]["id"]


async def make_contact(
    first_name: str = "Ada", last_name: str | None = None, **values: Any
) -> int:
    if last_name is None:
        last_name = unique_tag()
    contact = Contact(first_name=first_name, last_name=last_name, **values)
    rows = await Contact.insert(contact).returning(Contact.id)
    return rows[0]["id"]


async def stored_account(account_id: int) -> dict[str, Any]:
    return await Account.select().where(Account.id == account_id).first()


async def stored_contact(contact_id: int) -> dict[str, Any]:
    row = await Contact.select().where(Contact.id == contact_id).first()
    return decrypt_row(Contact, row)


async def signed_in(server, name: str | None = None) -> tuple[Session, Any]:
    user = await make_user(name=name)
    session = Session(server.url)
    await session.sign_in(user.email)
    return session, user


def form(base: dict[str, str], **changes: str) -> dict[str, str]:
    """Build a form post: every field as in ``base``, with ``changes`` typed."""
    data = {f"base_{name}": value for name, value in base.items()}
    data.update(base)
    data.update(changes)
    return data


def contact_base(first_name: str, last_name: str, **values: str) -> dict[str, str]:
    return {
        "first_name": first_name,
        "last_name": last_name,
        "email": "",
        "phone": "",
        "title": "",
        "lifecycle_stage": "",
        "account": "",
        "owner": "",
        **values,
    }


async def test_account_page_shows_form_and_stream(server) -> None:
    account_id = await make_account(domain="acme.example", employees=40)
    session, _ = await signed_in(server)

    page = await session.get(f"/accounts/{account_id}", headers=HTML)
    fragment = await session.get(f"/accounts/{account_id}/form", headers=HTML)

    assert page.status_code == 200
    assert f"topic=account%3A{account_id}" in page.text
    assert f'name="live-stream" content="account:{account_id}"' in page.text
    assert f'id="account-{account_id}-summary"' in page.text
    assert f'id="presence-account-{account_id}"' in page.text
    assert f'id="editing-account-{account_id}-employees"' in page.text
    assert 'name="base_domain" value="acme.example"' in page.text
    assert 'name="base_employees" value="40"' in page.text
    assert fragment.status_code == 200
    assert f'id="account-{account_id}-form"' in fragment.text
    assert "data-presence" in fragment.text
    await session.close()


async def test_account_edit_stored_and_pushed(server) -> None:
    account_id = await make_account("Before")
    session, user = await signed_in(server)
    socket = await session.live(f"topic=account:{account_id}")

    response = await session.post(
        f"/accounts/{account_id}",
        form(
            {"name": "Before", **ACCOUNT_BLANK},
            name="After",
            domain="Acme-Edit.EXAMPLE",
            employees="1,200",
            owner=str(user.id),
        ),
    )
    frame = await next_event(socket)

    assert response.status_code == 200
    assert "Saved." in response.text
    assert frame.startswith(f"#seq account:{account_id} 1\n")
    assert f'id="account-{account_id}-summary"' in frame
    assert 'hx-swap-oob="true"' in frame
    assert "After" in frame
    assert "acme-edit.example" in frame
    assert "1,200" in frame
    assert user.name in frame
    stored = await stored_account(account_id)
    assert stored["name"] == "After"
    assert stored["domain"] == "acme-edit.example"
    assert stored["employees"] == 1200
    assert stored["owner"] == user.id
    assert stored["version"] == 2
    events = await Event.select(Event.kind, Event.topics, Event.changes).where(
        (Event.record_type == "account") & (Event.record_id == account_id)
    )
    assert len(events) == 1
    assert events[0]["kind"] == "account.updated"
    assert events[0]["topics"] == [f"account:{account_id}"]
    assert json.loads(events[0]["changes"])["name"] == ["Before", "After"]
    await socket.close()
    await session.close()


async def test_account_edits_of_different_fields_merge(server) -> None:
    account_id = await make_account("Merge")
    first, _ = await signed_in(server)
    second, _ = await signed_in(server)
    base = {"name": "Merge", **ACCOUNT_BLANK}

    # Both forms were rendered from the same version.
    renamed = await first.post(
        f"/accounts/{account_id}", form(base, name="Merged", city="Lyon")
    )
    counted = await second.post(
        f"/accounts/{account_id}",
        form(base, employees="75", annual_revenue="1000000"),
    )

    assert renamed.status_code == 200
    assert counted.status_code == 200
    assert "data-conflict" not in counted.text
    stored = await stored_account(account_id)
    assert stored["name"] == "Merged"
    assert stored["city"] == "Lyon"
    assert stored["employees"] == 75
    assert str(stored["annual_revenue"]) == "1000000.00"
    assert stored["version"] == 3
    await first.close()
    await second.close()


async def test_account_edit_of_changed_field_conflicts(server) -> None:
    account_id = await make_account("Conflict", city="Paris")
    first, _ = await signed_in(server, name="Dana First")
    second, _ = await signed_in(server)
    base = {"name": "Conflict", **ACCOUNT_BLANK, "city": "Paris"}

    await first.post(f"/accounts/{account_id}", form(base, city="Lyon"))
    conflicted = await second.post(
        f"/accounts/{account_id}", form(base, city="Nice", country="France")
    )

    assert conflicted.status_code == 200
    assert 'data-conflict="city"' in conflicted.text
    assert "Dana First set it to <em>Lyon</em>" in conflicted.text
    assert 'name="city" value="Nice"' in conflicted.text
    assert 'name="base_city" value="Lyon"' in conflicted.text
    stored = await stored_account(account_id)
    assert stored["city"] == "Lyon"
    assert stored["country"] == "France"

    # Saving again from the conflict panel keeps the second user's value.
    resaved = await second.post(
        f"/accounts/{account_id}",
        form({**base, "city": "Lyon", "country": "France"}, city="Nice"),
    )
    assert "data-conflict" not in resaved.text
    assert (await stored_account(account_id))["city"] == "Nice"
    await first.close()
    await second.close()


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("employees", "12abc", "Employees &#39;12abc&#39; is not a whole number."),
        ("employees", "-3", "Employees &#39;-3&#39; must be zero or more."),
        ("employees", "1.5", "Employees &#39;1.5&#39; is not a whole number."),
        ("employees", "3000000000", "Employees &#39;3000000000&#39; must be at most"),
        ("website", "acme.example", "Website &#39;acme.example&#39; is not an http"),
        ("website", "ftp://acme.example", "Website &#39;ftp://acme.example&#39;"),
        ("website", "javascript:alert(1)", "Website &#39;javascript:alert(1)&#39;"),
        ("website", "https://acme.example:x", "is not an http or https URL"),
        ("domain", "not a domain", "Domain &#39;not a domain&#39; is not a valid"),
        ("domain", "https://acme.example", "Domain &#39;https://acme.example&#39;"),
        ("domain", "-acme.example", "Domain &#39;-acme.example&#39; is not a valid"),
        ("domain", "10.0.0.1", "Domain &#39;10.0.0.1&#39; is not a valid host"),
        ("annual_revenue", "lots", "Annual revenue &#39;lots&#39; is not a"),
        ("owner", "999999999", "Owner 999999999 is not a user."),
        ("name", " ", "Name &#39; &#39; must not be empty."),
    ],
)
async def test_invalid_account_value_is_rejected(
    server, field: str, raw: str, message: str
) -> None:
    account_id = await make_account("Valid", website="https://valid.example")
    session, _ = await signed_in(server)
    base = {"name": "Valid", **ACCOUNT_BLANK, "website": "https://valid.example"}

    response = await session.post(
        f"/accounts/{account_id}", form(base, city="Changed", **{field: raw})
    )

    assert response.status_code == 422
    assert message in response.text
    assert f'data-field="{field}"' in response.text
    # The form keeps what the user typed.
    assert 'name="city" value="Changed"' in response.text
    stored = await stored_account(account_id)
    assert stored["version"] == 1
    assert stored["city"] == ""
    assert stored["website"] == "https://valid.example"
    events = await Event.count().where(
        (Event.record_type == "account") & (Event.record_id == account_id)
    )
    assert events == 0
    await session.close()


async def test_legacy_website_keeps_account_editable(server) -> None:
    # Imports store websites as given, such as bare host names.
    account_id = await make_account("Legacy", website="www.legacy.example")
    session, _ = await signed_in(server)
    base = {"name": "Legacy", **ACCOUNT_BLANK, "website": "www.legacy.example"}

    response = await session.post(f"/accounts/{account_id}", form(base, phone="555"))

    assert response.status_code == 200
    stored = await stored_account(account_id)
    assert stored["phone"] == "555"
    assert stored["website"] == "www.legacy.example"
    await session.close()


async def test_unknown_account_is_not_found(server) -> None:
    session, _ = await signed_in(server)

    page = await session.get("/accounts/999999999", headers=HTML)
    fragment = await session.get("/accounts/999999999/form", headers=HTML)
    edit = await session.post(
        "/accounts/999999999", form({"name": "Nobody"}, name="Somebody")
    )
    invalid_edit = await session.post(
        "/accounts/999999999", form({"employees": ""}, employees="x")
    )

    assert page.status_code == 404
    assert "Account 999999999 was not found." in page.text
    assert fragment.status_code == 404
    assert edit.status_code == 404
    assert invalid_edit.status_code == 404
    await session.close()


@pytest.mark.parametrize("family", ["account", "contact"])
async def test_unknown_record_stream_is_refused(server, family: str) -> None:
    session, _ = await signed_in(server)

    socket = await session.live(f"topic={family}:999999")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), timeout=5)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    await session.close()


async def test_account_page_shows_who_is_editing(server) -> None:
    account_id = await make_account()
    watcher, _ = await signed_in(server)
    editor, editor_user = await signed_in(server, name="Eve Editor")
    watching = await watcher.live(f"topic=account:{account_id}")
    editing = await editor.live(f"topic=account:{account_id}")

    await editing.send(json.dumps({"type": "presence", "editing": "employees"}))
    marker = f'id="editing-account-{account_id}-employees"'
    async with asyncio.timeout(5):
        while True:
            fragment = await next_presence(watching)
            if marker in fragment and "Eve Editor is editing" in fragment:
                break

    assert f'id="presence-account-{account_id}"' in fragment
    assert f'data-user-id="{editor_user.id}"' in fragment
    await watching.close()
    await editing.close()
    await watcher.close()
    await editor.close()


async def test_far_behind_account_page_snapshot(server) -> None:
    account_id = await make_account("Snapshot")
    session, _ = await signed_in(server)
    await make_contact("Sam", account=account_id)
    base = {"name": "Snapshot", **ACCOUNT_BLANK}
    for city in ("Oslo", "Rome", "Bern"):
        await session.post(f"/accounts/{account_id}", form(base, city=city))
        base["city"] = city

    socket = await session.live(f"resume=1&topic=account:{account_id}")
    await socket.send(
        json.dumps({"type": "resume", "streams": {f"account:{account_id}": 0}})
    )
    frame = await next_event(socket)

    assert frame.startswith(f"#snap account:{account_id} 3\n")
    assert f'id="account-{account_id}-summary"' in frame
    assert "Bern" in frame
    assert f'id="account-{account_id}-contacts-heading"' in frame
    assert "Contacts (1)" in frame
    assert "This list may be out of date." in frame
    await socket.close()
    await session.close()


async def test_contact_page_shows_form_and_stream(server) -> None:
    account_id = await make_account("Employer")
    contact_id = await make_contact("Kim", "Page", account=account_id)
    session, _ = await signed_in(server)

    page = await session.get(f"/contacts/{contact_id}", headers=HTML)
    fragment = await session.get(f"/contacts/{contact_id}/form", headers=HTML)

    assert page.status_code == 200
    assert f"topic=contact%3A{contact_id}" in page.text
    assert f'id="contact-{contact_id}-summary"' in page.text
    assert f'id="presence-contact-{contact_id}"' in page.text
    assert f'id="editing-contact-{contact_id}-email"' in page.text
    assert f'name="base_account" value="{account_id}"' in page.text
    assert fragment.status_code == 200
    assert f'id="contact-{contact_id}-form"' in fragment.text
    await session.close()


async def test_contact_edit_reaches_account_page(server) -> None:
    account_id = await make_account("Home")
    contact_id = await make_contact("Lee", "Before", account=account_id)
    session, _ = await signed_in(server)
    contact_socket = await session.live(f"topic=contact:{contact_id}")
    account_socket = await session.live(f"topic=account:{account_id}")

    response = await session.post(
        f"/contacts/{contact_id}",
        form(
            contact_base("Lee", "Before", account=str(account_id)),
            last_name="After",
            email="Lee.After@Example.COM",
            title="Buyer",
        ),
    )
    summary = await next_event(contact_socket)
    row = await next_event(account_socket)

    assert response.status_code == 200
    assert summary.startswith(f"#seq contact:{contact_id} 1\n")
    assert f'id="contact-{contact_id}-summary"' in summary
    assert "Lee After" in summary
    assert "lee.after@example.com" in summary
    assert row.startswith(f"#seq account:{account_id} 1\n")
    assert (
        f'<li id="account-{account_id}-contact-{contact_id}" hx-swap-oob="true">' in row
    )
    assert "Lee After" in row
    assert "Buyer" in row
    assert "Contacts (1)" in row
    stored = await stored_contact(contact_id)
    assert stored["email"] == "lee.after@example.com"
    assert stored["version"] == 2
    await contact_socket.close()
    await account_socket.close()
    await session.close()


async def test_contact_moving_accounts_updates_both_pages(server) -> None:
    old_account = await make_account("Old employer")
    new_account = await make_account("New employer")
    contact_id = await make_contact("Max", "Mover", account=old_account)
    session, _ = await signed_in(server)
    old_socket = await session.live(f"topic=account:{old_account}")
    new_socket = await session.live(f"topic=account:{new_account}")

    response = await session.post(
        f"/contacts/{contact_id}",
        form(
            contact_base("Max", "Mover", account=str(old_account)),
            account=str(new_account),
        ),
    )
    left = await next_event(old_socket)
    joined = await next_event(new_socket)

    assert response.status_code == 200
    assert "Now at" in response.text
    assert "New employer" in response.text
    assert left.startswith(f"#seq account:{old_account} 1\n")
    assert (
        f'<li id="account-{old_account}-contact-{contact_id}" hx-swap-oob="delete">'
        in left
    )
    assert "Contacts (0)" in left
    assert joined.startswith(f"#seq account:{new_account} 1\n")
    assert "This list may be out of date." in joined
    assert "Contacts (1)" in joined
    assert (await stored_contact(contact_id))["account"] == new_account
    await old_socket.close()
    await new_socket.close()
    await session.close()


async def test_contact_phone_edit_skips_account(server) -> None:
    account_id = await make_account()
    contact_id = await make_contact("Pat", "Phone", account=account_id)
    session, _ = await signed_in(server)
    base = contact_base("Pat", "Phone", account=str(account_id))

    await session.post(f"/contacts/{contact_id}", form(base, phone="555 0100"))

    events = await Event.select(Event.topics).where(
        (Event.record_type == "contact") & (Event.record_id == contact_id)
    )
    assert events == [{"topics": [f"contact:{contact_id}"]}]
    await session.close()


async def test_contact_edits_of_different_fields_merge(server) -> None:
    contact_id = await make_contact("Mia", "Merge")
    first, _ = await signed_in(server)
    second, _ = await signed_in(server)
    base = contact_base("Mia", "Merge")

    titled = await first.post(f"/contacts/{contact_id}", form(base, title="CTO"))
    phoned = await second.post(f"/contacts/{contact_id}", form(base, phone="555"))

    assert titled.status_code == 200
    assert phoned.status_code == 200
    assert "data-conflict" not in phoned.text
    stored = await stored_contact(contact_id)
    assert stored["title"] == "CTO"
    assert stored["phone"] == "555"
    assert stored["version"] == 3
    await first.close()
    await second.close()


async def test_contact_edit_of_changed_field_conflicts(server) -> None:
    contact_id = await make_contact("Cal", "Conflict")
    first, _ = await signed_in(server, name="Dana First")
    second, _ = await signed_in(server)
    base = contact_base("Cal", "Conflict")

    await first.post(f"/contacts/{contact_id}", form(base, email="one@example.com"))
    conflicted = await second.post(
        f"/contacts/{contact_id}", form(base, email="two@example.com")
    )

    assert conflicted.status_code == 200
    assert 'data-conflict="email"' in conflicted.text
    assert "Dana First set it to <em>one@example.com</em>" in conflicted.text
    assert 'name="email" value="two@example.com"' in conflicted.text
    assert (await stored_contact(contact_id))["email"] == "one@example.com"
    await first.close()
    await second.close()


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("email", "not-an-email", "Email &#39;not-an-email&#39; is not a valid"),
        ("email", "a@b", "Email &#39;a@b&#39; is not a valid email address."),
        ("email", "a b@example.com", "Email &#39;a b@example.com&#39; is not"),
        ("account", "abc", "Account &#39;abc&#39; is not a valid id."),
        ("account", "999999999", "Account 999999999 does not exist."),
        ("owner", "999999999", "Owner 999999999 is not a user."),
    ],
)
async def test_invalid_contact_value_is_rejected(
    server, field: str, raw: str, message: str
) -> None:
    contact_id = await make_contact("Val", "Valid")
    session, _ = await signed_in(server)

    response = await session.post(
        f"/contacts/{contact_id}",
        form(contact_base("Val", "Valid"), title="Changed", **{field: raw}),
    )

    assert response.status_code == 422
    assert message in response.text
    assert 'name="title" value="Changed"' in response.text
    stored = await stored_contact(contact_id)
    assert stored["version"] == 1
    assert stored["title"] == ""
    await session.close()


async def test_contact_name_cannot_become_empty(server) -> None:
    contact_id = await make_contact("Nia", "Named")
    first, _ = await signed_in(server)
    second, _ = await signed_in(server)
    base = contact_base("Nia", "Named")

    # Each edit clears one half of the name, which alone is allowed.
    cleared_first = await first.post(
        f"/contacts/{contact_id}", form(base, first_name="")
    )
    cleared_both = await second.post(
        f"/contacts/{contact_id}", form(base, last_name="")
    )

    assert cleared_first.status_code == 200
    assert cleared_both.status_code == 422
    assert "First name or last name must be given." in cleared_both.text
    stored = await stored_contact(contact_id)
    assert stored["first_name"] == ""
    assert stored["last_name"] == "Named"
    assert stored["version"] == 2
    await first.close()
    await second.close()


async def test_nameless_contact_stays_editable(server) -> None:
    # Imports may create a contact from an email alone.
    contact_id = await make_contact("", "", email="only@example.com")
    session, _ = await signed_in(server)
    base = contact_base("", "", email="only@example.com")

    response = await session.post(f"/contacts/{contact_id}", form(base, phone="555"))

    assert response.status_code == 200
    assert (await stored_contact(contact_id))["phone"] == "555"
    await session.close()


async def test_unknown_contact_is_not_found(server) -> None:
    session, _ = await signed_in(server)

    page = await session.get("/contacts/999999999", headers=HTML)
    fragment = await session.get("/contacts/999999999/form", headers=HTML)
    edit = await session.post("/contacts/999999999", form({"title": ""}, title="X"))

    assert page.status_code == 404
    assert "Contact 999999999 was not found." in page.text
    assert fragment.status_code == 404
    assert edit.status_code == 404
    await session.close()
