"""The account and contact lists and pages: queries, paging and HTTP pages."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.accounts import queries as account_queries
from app.accounts.tables import Account
from app.contacts import queries as contact_queries
from app.contacts.tables import Contact
from app.deals.tables import Deal
from app.errors import FieldError, NotFound
from app.pagination import (
    MAX_PAGE_SIZE,
    MAX_SEARCH_LENGTH,
    PageRequest,
    contains_pattern,
    parse_search,
    parse_sibling_pages,
)
from tests.factories import PASSWORD, make_deal, make_pipeline, make_ticket, make_user


def unique_tag() -> str:
    return uuid.uuid4().hex[:12]


async def make_account(name: str, **values: Any) -> int:
    rows = await Account.insert(Account(name=name, **values)).returning(Account.id)
    return rows[0]["id"]


async def make_contact(first_name: str, last_name: str, **values: Any) -> int:
    contact = Contact(first_name=first_name, last_name=last_name, **values)
    rows = await Contact.insert(contact).returning(Contact.id)
    return rows[0]["id"]


# Stages of the pipeline that tests.factories.make_pipeline creates.
PROSPECTING, ENGAGING, WON, LOST = range(4)


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def record_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect the SQL of every query run from now on into the returned list."""
    from app.piccolo_conf import DB

    queries: list[str] = []
    engine_class = type(DB)
    run_querystring = engine_class.run_querystring

    async def recording(engine: Any, querystring: Any, in_pool: bool = True) -> Any:
        queries.append(str(querystring))
        return await run_querystring(engine, querystring, in_pool=in_pool)

    # The engine's class declares __slots__, so the method is patched there.
    monkeypatch.setattr(engine_class, "run_querystring", recording)
    return queries


async def test_search_accounts_matches_name_or_domain() -> None:
    tag = unique_tag()
    await make_account(f"Acme {tag}", domain=f"acme-{tag}.com")
    await make_account(f"Globex {tag}", domain=f"zeta-{tag}.io")
    await make_account(f"Initech {unique_tag()}", domain="initech.example")

    by_tag = await account_queries.search_accounts(tag.upper(), PageRequest())
    by_domain = await account_queries.search_accounts(f"ZETA-{tag}", PageRequest())

    assert names(by_tag.rows) == [f"Acme {tag}", f"Globex {tag}"]
    assert by_tag.total == 2
    assert names(by_domain.rows) == [f"Globex {tag}"]
    assert by_domain.total == 1


async def test_search_accounts_takes_wildcards_literally() -> None:
    tag = unique_tag()
    await make_account(f"100% {tag}")
    await make_account(f"100x {tag}")
    await make_account(f"a_b {tag}")
    await make_account(f"axb {tag}")
    await make_account(f"back\\slash {tag}")
    await make_account(f"backxslash {tag}")

    percent = await account_queries.search_accounts(f"0% {tag}", PageRequest())
    underscore = await account_queries.search_accounts(f"a_b {tag}", PageRequest())
    backslash = await account_queries.search_accounts("k\\s", PageRequest())

    assert names(percent.rows) == [f"100% {tag}"]
    assert names(underscore.rows) == [f"a_b {tag}"]
    assert f"back\\slash {tag}" in names(backslash.rows)
    assert f"backxslash {tag}" not in names(backslash.rows)


async def test_search_accounts_pages_in_name_order() -> None:
    tag = unique_tag()
    for name in ("delta", "Bravo", "echo", "alpha", "Charlie"):
        await make_account(f"{name} {tag}")

    first = await account_queries.search_accounts(tag, PageRequest(number=1, size=2))
    last = await account_queries.search_accounts(tag, PageRequest(number=3, size=2))
    beyond = await account_queries.search_accounts(tag, PageRequest(number=4, size=2))

    assert names(first.rows) == [f"alpha {tag}", f"Bravo {tag}"]
    assert first.total == 5
    assert first.page_count == 3
    assert not first.has_prev
    assert first.has_next
    assert names(last.rows) == [f"echo {tag}"]
    assert last.has_prev
    assert not last.has_next
    assert (last.first_item, last.last_item) == (5, 5)
    assert beyond.rows == []
    assert beyond.total == 5
    assert beyond.prev_url == "?page=3&size=2"


async def test_search_accounts_sums_open_work() -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    busy = await make_account(f"Busy {tag}")
    await make_account(f"Idle {tag}")
    await make_deal(pipeline, PROSPECTING, "100.50", account=busy)
    await make_deal(pipeline, ENGAGING, "250", account=busy)
    unpriced = Deal(
        name="Unpriced",
        pipeline=pipeline["id"],
        stage=pipeline["stages"][PROSPECTING],
        account=busy,
    )
    await Deal.insert(unpriced)
    await make_deal(pipeline, WON, "9000", account=busy)
    await make_deal(pipeline, LOST, "500", account=busy)
    for status in ("new", "open", "pending", "on_hold", "solved", "closed"):
        await make_ticket(status, account=busy)

    page = await account_queries.search_accounts(tag, PageRequest())
    busy_row, idle_row = page.rows

    assert busy_row["open_deal_count"] == 3
    assert busy_row["open_amount"] == Decimal("350.50")
    assert busy_row["open_ticket_count"] == 4
    assert idle_row["open_deal_count"] == 0
    assert idle_row["open_amount"] == 0
    assert idle_row["open_ticket_count"] == 0


async def test_load_account_page_lists_and_counts() -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    parent = await make_account(f"Parent {tag}")
    account = await make_account(f"Child {tag}", parent=parent, employees=1200)
    await make_account(f"Grandchild {tag}", parent=account)
    await make_contact("Zoe", "Adams", account=account)
    await make_contact("amy", "Zimmer", account=account)
    deal_ids = [await make_deal(pipeline, account=account) for _ in range(51)]
    await make_ticket(account=account, priority="urgent")

    paging = parse_sibling_pages(
        f"/accounts/{account}",
        {
            "subsidiaries_page": None,
            "contacts_page": None,
            "deals_page": None,
            "tickets_page": None,
        },
    )
    loaded = await account_queries.load_account_page(
        account,
        subsidiaries=paging["subsidiaries_page"],
        contacts=paging["contacts_page"],
        deals=paging["deals_page"],
        tickets=paging["tickets_page"],
    )

    assert loaded.account["parent_name"] == f"Parent {tag}"
    assert loaded.account["employees"] == 1200
    assert names(loaded.subsidiaries.rows) == [f"Grandchild {tag}"]
    assert names(loaded.contacts.rows) == ["Zoe Adams", "amy Zimmer"]
    assert loaded.deals.total == 51
    assert len(loaded.deals.rows) == 50
    assert loaded.deals.rows[0]["id"] == deal_ids[-1]
    assert loaded.deals.next_url == f"/accounts/{account}?deals_page=2#deals"
    assert [row["priority"] for row in loaded.tickets.rows] == ["urgent"]
    assert loaded.tickets.next_url is None


async def test_load_account_page_second_deal_page() -> None:
    pipeline = await make_pipeline()
    account = await make_account(f"Paged {unique_tag()}")
    first_deal = await make_deal(pipeline, account=account)
    for _ in range(50):
        await make_deal(pipeline, account=account)

    paging = parse_sibling_pages(
        f"/accounts/{account}", {"deals_page": "2", "tickets_page": "3"}
    )
    loaded = await account_queries.load_account_page(
        account,
        subsidiaries=PageRequest(),
        contacts=PageRequest(),
        deals=paging["deals_page"],
        tickets=paging["tickets_page"],
    )

    assert [row["id"] for row in loaded.deals.rows] == [first_deal]
    assert loaded.deals.prev_url == f"/accounts/{account}?tickets_page=3#deals"
    assert loaded.tickets.rows == []


async def test_list_and_record_pages_query_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    account = await make_account(f"Counted {tag}")
    empty = await make_account(f"Empty {tag}")
    await make_account(f"Subsidiary {tag}", parent=account)
    contact = await make_contact("Cora", f"Counted{tag}", account=account)
    await make_deal(pipeline, account=account, contact=contact)
    await make_ticket(account=account, requester=contact)
    queries = record_queries(monkeypatch)

    await account_queries.search_accounts(tag, PageRequest())
    list_queries = len(queries)
    await account_queries.search_accounts(f"no such account {tag}", PageRequest())
    empty_list_queries = len(queries) - list_queries
    pages = {"subsidiaries": PageRequest(), "contacts": PageRequest()}
    queries.clear()
    await account_queries.load_account_page(
        account, **pages, deals=PageRequest(), tickets=PageRequest()
    )
    full_account_queries = len(queries)
    queries.clear()
    await account_queries.load_account_page(
        empty, **pages, deals=PageRequest(), tickets=PageRequest()
    )
    empty_account_queries = len(queries)
    queries.clear()
    await contact_queries.search_contacts(tag, PageRequest())
    contact_list_queries = len(queries)
    queries.clear()
    await contact_queries.load_contact_page(
        contact, deals=PageRequest(), tickets=PageRequest()
    )
    contact_page_queries = len(queries)

    assert list_queries == 2
    assert empty_list_queries == 1
    assert full_account_queries == 5
    assert empty_account_queries == 1
    assert contact_list_queries == 2
    assert contact_page_queries == 3


async def test_get_account_unknown_raises_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        await account_queries.get_account(2_000_000_000)

    assert caught.value.record_type == "account"
    assert caught.value.record_id == 2_000_000_000


async def test_search_contacts_matches_full_name_or_email() -> None:
    tag = unique_tag()
    account = await make_account(f"Employer {tag}")
    await make_contact("Ada", f"Lovelace{tag}", email=f"ada@{tag}.example")
    await make_contact("Grace", f"Hopper{tag}", email=f"grace@{tag}.example")
    await make_contact("Alan", f"Turing{tag}", account=account, title="Analyst")

    by_name = await contact_queries.search_contacts(
        parse_search(f"ADA  lovelace{tag}"), PageRequest()
    )
    by_email = await contact_queries.search_contacts(
        parse_search(f"  grace@{tag}  "), PageRequest()
    )
    everyone = await contact_queries.search_contacts(tag, PageRequest(size=2))

    assert names(by_name.rows) == [f"Ada Lovelace{tag}"]
    assert names(by_email.rows) == [f"Grace Hopper{tag}"]
    assert everyone.total == 3
    assert names(everyone.rows) == [f"Grace Hopper{tag}", f"Ada Lovelace{tag}"]

    turing = await contact_queries.search_contacts(f"turing{tag}", PageRequest())

    assert turing.rows[0]["account_name"] == f"Employer {tag}"
    assert turing.rows[0]["title"] == "Analyst"


async def test_search_contacts_takes_percent_literally() -> None:
    tag = unique_tag()
    await make_contact("Pct", f"100%{tag}")
    await make_contact("Pct", f"100x{tag}")

    page = await contact_queries.search_contacts(f"0%{tag}", PageRequest())

    assert names(page.rows) == [f"Pct 100%{tag}"]


async def test_load_contact_page_lists_deals_and_tickets() -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    account = await make_account(f"Home {tag}")
    contact = await make_contact("Kim", f"Requester{tag}", account=account)
    other = await make_contact("Lee", f"Other{tag}")
    await make_deal(pipeline, name=f"Kim's deal {tag}", contact=contact)
    await make_deal(pipeline, name=f"Lee's deal {tag}", contact=other)
    await make_ticket("pending", subject=f"Kim's ticket {tag}", requester=contact)
    await make_ticket(subject=f"Kim's account ticket {tag}", account=account)

    loaded = await contact_queries.load_contact_page(
        contact, deals=PageRequest(), tickets=PageRequest()
    )

    assert loaded.contact["account_name"] == f"Home {tag}"
    assert names(loaded.deals.rows) == [f"Kim's deal {tag}"]
    assert loaded.deals.total == 1
    assert [row["subject"] for row in loaded.tickets.rows] == [f"Kim's ticket {tag}"]
    assert loaded.tickets.total == 1


async def test_get_contact_unknown_raises_not_found() -> None:
    with pytest.raises(NotFound):
        await contact_queries.get_contact(2_000_000_000)


@pytest.mark.parametrize(
    ("raw_number", "raw_size", "field"),
    [
        ("0", None, "page"),
        ("-1", None, "page"),
        ("abc", None, "page"),
        ("1.5", None, "page"),
        ("1_0", None, "page"),
        ("²", None, "page"),
        ("9" * 30, None, "page"),
        ("1", "0", "size"),
        ("1", str(MAX_PAGE_SIZE + 1), "size"),
        ("1", "ten", "size"),
    ],
)
def test_page_request_rejects_invalid_values(
    raw_number: str, raw_size: str | None, field: str
) -> None:
    with pytest.raises(FieldError) as caught:
        PageRequest.parse(raw_number, raw_size)

    assert caught.value.field == field
    assert caught.value.value == (raw_size if field == "size" else raw_number)


def test_page_request_defaults_and_links() -> None:
    default = PageRequest.parse(None)
    blank = PageRequest.parse("")
    paging = PageRequest.parse(
        " 3 ", str(MAX_PAGE_SIZE), path="/accounts", keep={"q": "a&b", "team": ""}
    )

    assert (default.number, default.size, default.offset) == (1, 50, 0)
    assert blank.number == 1
    assert paging.offset == 2 * MAX_PAGE_SIZE
    assert paging.url(1) == f"/accounts?q=a%26b&size={MAX_PAGE_SIZE}"
    assert paging.url(4) == f"/accounts?q=a%26b&page=4&size={MAX_PAGE_SIZE}"
    assert PageRequest(path="/contacts").url(1) == "/contacts"


def test_parse_search_collapses_whitespace() -> None:
    assert parse_search(None) == ""
    assert parse_search("  Ada \t Lovelace ") == "Ada Lovelace"
    with pytest.raises(FieldError) as caught:
        parse_search("x" * (MAX_SEARCH_LENGTH + 1))
    assert caught.value.field == "search"


def test_parse_search_refuses_nul() -> None:
    with pytest.raises(FieldError) as caught:
        parse_search("ada\x00")
    assert caught.value.field == "search"
    assert caught.value.value == "ada\\0"


def test_contains_pattern_escapes_wildcards() -> None:
    assert contains_pattern("50%_off\\") == "%50\\%\\_off\\\\%"


@contextlib.asynccontextmanager
async def app_client() -> AsyncIterator[AsyncTestClient[Any]]:
    """Run the app in a test client.

    The client serves the app from its own thread and event loop, and the
    app's lifespan opens and closes the database pool there. So the pool of
    the test session is closed meanwhile and reopened afterwards, and the
    test must not query the database itself while the client is open.
    """
    from app.main import create_app
    from app.piccolo_conf import DB

    app = create_app()
    await DB.close_connection_pool()
    try:
        async with AsyncTestClient(app=app) as client:
            try:
                yield client
            finally:
                # TODO: create_app() opens a Redis client for the session
                # store that nothing closes at shutdown. Close it here until
                # the app does, or its socket fails the run with a
                # ResourceWarning.
                client.blocking_portal.call(app.state.redis.aclose)
    finally:
        await DB.start_connection_pool(min_size=1, max_size=10)


@contextlib.asynccontextmanager
async def signed_in_client() -> AsyncIterator[AsyncTestClient[Any]]:
    """Run the app in a test client, signed in as a new user."""
    user = await make_user()

    async with app_client() as client:
        await client.get("/login")
        signed_in = await client.post(
            "/login",
            data={
                "email": user.email,
                "password": PASSWORD,
                "_csrf_token": client.cookies["csrftoken"],
            },
            follow_redirects=False,
        )
        assert signed_in.status_code in (302, 303), signed_in.text
        yield client


HTML = {"accept": "text/html"}


def test_controllers_register_without_warnings() -> None:
    from litestar import Litestar

    from app.accounts.routes import AccountController
    from app.contacts.routes import ContactController

    Litestar(route_handlers=[AccountController, ContactController])


async def test_account_pages_render() -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    parent = await make_account(f"Holding {tag}")
    account = await make_account(
        f"Acme {tag}",
        domain=f"acme-{tag}.com",
        industry="Robotics",
        city="Lyon",
        country="France",
        website="javascript:alert(1)",
        parent=parent,
    )
    contact = await make_contact("Rita", f"Buyer{tag}", account=account)
    deal = await make_deal(pipeline, amount="12345", account=account)
    ticket = await make_ticket(account=account)

    async with signed_in_client() as client:
        listing = await client.get("/accounts", params={"q": tag}, headers=HTML)
        page = await client.get(f"/accounts/{account}", headers=HTML)

    assert listing.status_code == 200
    assert "2 accounts" in listing.text
    assert f'href="/accounts/{account}"' in listing.text
    assert "$12,345" in listing.text
    assert "Lyon, France" in listing.text
    assert page.status_code == 200
    assert f"Acme {tag}" in page.text
    assert "Robotics" in page.text
    assert f'href="/accounts/{parent}"' in page.text
    assert f'href="/contacts/{contact}"' in page.text
    assert f'href="/deals/{deal}"' in page.text
    assert f'href="/tickets/{ticket}"' in page.text
    assert 'href="javascript:' not in page.text


async def test_account_pages_reject_bad_requests() -> None:
    account = await make_account(f"Paged {unique_tag()}")
    async with signed_in_client() as client:
        missing = await client.get("/accounts/2000000000", headers=HTML)
        bad_page = await client.get("/accounts", params={"page": "zero"}, headers=HTML)
        bad_deal_page = await client.get(
            f"/accounts/{account}", params={"deals_page": "-2"}, headers=HTML
        )

    assert missing.status_code == 404
    assert "Account 2000000000 was not found." in missing.text
    assert bad_page.status_code == 400
    assert "Page &#39;zero&#39; must be a whole number of 1 or more." in bad_page.text
    assert bad_deal_page.status_code == 400
    assert "Deals page &#39;-2&#39;" in bad_deal_page.text


async def test_contact_pages_render() -> None:
    tag = unique_tag()
    pipeline = await make_pipeline()
    account = await make_account(f"Employer {tag}")
    contact = await make_contact(
        "Omar", f"Reader{tag}", email=f"omar@{tag}.example", account=account
    )
    deal = await make_deal(pipeline, contact=contact)
    ticket = await make_ticket(requester=contact)

    async with signed_in_client() as client:
        listing = await client.get(
            "/contacts", params={"q": f"omar@{tag}"}, headers=HTML
        )
        page = await client.get(f"/contacts/{contact}", headers=HTML)
        missing = await client.get("/contacts/2000000000", headers=HTML)

    assert listing.status_code == 200
    assert "1 contact matching" in listing.text
    assert f'href="/contacts/{contact}"' in listing.text
    assert f'href="/accounts/{account}"' in listing.text
    assert page.status_code == 200
    assert f'href="/deals/{deal}"' in page.text
    assert f'href="/tickets/{ticket}"' in page.text
    assert missing.status_code == 404
    assert "Contact 2000000000 was not found." in missing.text


async def test_list_pages_require_sign_in() -> None:
    async with app_client() as anonymous:
        response = await anonymous.get(
            "/accounts", headers=HTML, follow_redirects=False
        )

    assert response.status_code in (302, 303)
    assert response.headers["location"] == "/login?next=/accounts"
