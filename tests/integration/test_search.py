"""Search across record types: matching, ranking, scopes, hidden fields, the
search page, the top bar's dropdown and the JSON API."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.access.permissions import Access
from app.access.tables import Role
from app.accounts.tables import Account
from app.api.keys import create_key
from app.auth.service import CurrentUser, load_user
from app.encryption import marked
from app.leads.service import create_lead
from app.search.queries import (
    SEARCH_TYPES,
    readable_types,
    search_groups,
    search_type,
    ticket_number,
)
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    make_account,
    make_contact,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    shows_hidden_amount,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

HTML = {"accept": "text/html"}


def tag() -> str:
    """A word no other test's record contains."""
    return f"sq{uuid.uuid4().hex[:10]}"


async def access_of(user_id: int) -> Access:
    user = await load_user(user_id)
    assert user is not None
    return user.access


async def ids_found(kind: str, search: str, user_id: int) -> list[int]:
    access = await access_of(user_id)
    hits, _ = await search_type(SEARCH_TYPES[kind], search, access, 50)
    return [hit.id for hit in hits]


async def signed_in(server: Any, email: str) -> Session:
    session = Session(server.url)
    await session.sign_in(email)
    return session


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_search_matches_each_type() -> None:
    admin = await make_user("admin")
    word = tag()
    account = await make_account(
        name=f"Harbour {word}", domain=f"{word}.example", phone="+1 (555) 010-2030"
    )
    contact = await make_contact(
        first_name="Grace", last_name=f"Hopper {word}", email=f"grace@{word}.example"
    )
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, name=f"Renewal {word}")
    ticket = await make_ticket(subject=f"Printer jam {word}")
    lead = await create_lead(
        {"name": "Ada", "email": f"ada@{word}.example", "company": f"Engines {word}"},
        admin.id,
    )

    assert await ids_found("account", word.upper(), admin.id) == [account]
    assert await ids_found("account", f"{word}.example", admin.id) == [account]
    assert account in await ids_found("account", "555 010 2030", admin.id)
    assert account in await ids_found("account", "(555) 010-20", admin.id)
    assert await ids_found("contact", f"Grace Hopper {word}", admin.id) == [contact]
    assert await ids_found("contact", f"grace@{word}", admin.id) == [contact]
    assert await ids_found("deal", f"renewal {word}", admin.id) == [deal]
    assert await ids_found("ticket", f"jam {word}", admin.id) == [ticket]
    assert await ids_found("lead", f"ada@{word}", admin.id) == [lead]
    assert await ids_found("lead", f"Engines {word}", admin.id) == [lead]


async def test_search_finds_ticket_by_number() -> None:
    admin = await make_user("admin")
    ticket = await make_ticket(subject=f"Number {tag()}")

    for text in (f"T-{ticket}", f"#T-{ticket}", f"t{ticket}"):
        found = await ids_found("ticket", text, admin.id)
        assert found[0] == ticket, text

    assert ticket_number(f"T-{ticket}") == ticket
    assert ticket_number(str(ticket)) is None
    assert ticket_number("T-99999999999") is None


async def test_contact_phone_is_not_searched() -> None:
    admin = await make_user("admin")
    digits = f"4{uuid.uuid4().int % 10**9:09d}"
    await make_contact(last_name=f"Phoned {tag()}", phone=digits)

    assert await ids_found("contact", digits, admin.id) == []


async def test_search_ranks_exact_first() -> None:
    admin = await make_user("admin")
    word = tag()
    inner = await make_account(name=f"The {word} group")
    prefix = await make_account(name=f"{word} holdings")
    exact = await make_account(name=word)

    assert await ids_found("account", word, admin.id) == [exact, prefix, inner]


async def test_search_takes_wildcards_literally() -> None:
    admin = await make_user("admin")
    word = tag()
    percent = await make_account(name=f"{word} 100% growth")
    await make_account(name=f"{word} 100x growth")

    assert await ids_found("account", f"{word} 100%", admin.id) == [percent]


async def test_search_skips_marked_account_phone() -> None:
    admin = await make_user("admin")
    digits = f"7{uuid.uuid4().int % 10**9:09d}"
    account = await make_account(name=f"Marked {tag()}", phone=digits)
    assert await ids_found("account", digits, admin.id) == [account]

    marked.set_states(
        [{"table_name": "account", "column_name": "phone", "state": marked.ENCRYPTED}]
    )
    try:
        found = await ids_found("account", digits, admin.id)
    finally:
        await marked.refresh()

    assert found == []


async def hidden_field_role(object_type: str, field: str) -> str:
    """Create a role that reads everything but ``field`` of ``object_type``."""
    role = Role(
        name=f"blind_{uuid.uuid4().hex[:8]}",
        label="Blind",
        permissions={
            kind: {"read": "all"}
            for kind in ("account", "contact", "deal", "ticket", "lead")
        },
        field_rules={object_type: {field: "hidden"}},
    )
    await role.save()
    return role.name


async def test_search_leaves_hidden_fields_out() -> None:
    user = await make_user(await hidden_field_role("contact", "email"))
    word = tag()
    contact = await make_contact(last_name=f"Blind {word}", email=f"x@{word}.example")

    by_email = await ids_found("contact", f"x@{word}", user.id)
    access = await access_of(user.id)
    hits, _ = await search_type(SEARCH_TYPES["contact"], word, access, 10)

    assert by_email == []
    assert [hit.id for hit in hits] == [contact]
    assert "email" not in hits[0].record
    assert hits[0].name == f"Ada Blind {word}"


async def test_search_follows_team_scope() -> None:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    colleague = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    pipeline = await make_pipeline()
    word = tag()
    own = await make_deal(pipeline, owner=rep.id, team=team, name=f"Own {word}")
    shared = await make_deal(
        pipeline, owner=colleague.id, team=team, name=f"Team {word}"
    )
    await make_deal(pipeline, owner=outsider.id, team=other_team, name=f"Other {word}")
    await make_ticket(subject=f"Ticket {word}")

    groups = await search_groups(word, readable_types(rep.access), rep.access)

    assert {group.kind.object_type for group in groups} == {"deal"}
    assert sorted(hit.id for hit in groups[0].hits) == sorted([own, shared])
    assert groups[0].total == 2
    assert "ticket" not in [kind.object_type for kind in readable_types(rep.access)]


@dataclass
class ScopedDeals:
    """Two deals of one word: ``own`` in the rep's team with the hidden amount,
    ``other`` in another team. The agent is in the rep's team."""

    word: str
    rep: CurrentUser
    agent: CurrentUser
    own: int
    other: int


async def scoped_deals() -> ScopedDeals:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    agent = await make_user("support_agent", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    pipeline = await make_pipeline()
    word = tag()
    own = await make_deal(
        pipeline, owner=rep.id, team=team, amount=HIDDEN_AMOUNT, name=f"Own {word}"
    )
    other = await make_deal(
        pipeline, owner=outsider.id, team=other_team, name=f"Other {word}"
    )
    return ScopedDeals(word, rep, agent, own, other)


async def test_search_page_scope_and_amounts(server) -> None:
    deals = await scoped_deals()
    word, own, other = deals.word, deals.own, deals.other
    rep_session = await signed_in(server, deals.rep.email)
    agent_session = await signed_in(server, deals.agent.email)

    rep_page = await rep_session.get("/search", params={"q": word}, headers=HTML)
    agent_page = await agent_session.get("/search", params={"q": word}, headers=HTML)
    agent_hint = await agent_session.get("/search/suggest", params={"q": word})

    assert rep_page.status_code == 200
    assert f'href="/deals/{own}"' in rep_page.text
    assert f'href="/deals/{other}"' not in rep_page.text
    assert shows_hidden_amount(rep_page.text)
    assert agent_page.status_code == 200
    assert f'href="/deals/{own}"' in agent_page.text
    assert f'href="/deals/{other}"' in agent_page.text
    assert not shows_hidden_amount(agent_page.text)
    assert 'class="amount"' not in agent_page.text
    assert agent_hint.status_code == 200
    assert f'href="/deals/{own}"' in agent_hint.text
    assert not shows_hidden_amount(agent_hint.text)
    await rep_session.close()
    await agent_session.close()


async def test_search_page_groups_link_to_more(server) -> None:
    admin = await make_user("admin")
    word = tag()
    for number in range(7):
        await make_account(name=f"Group {word} {number}")
    tickets = [await make_ticket(subject=f"Group {word} {n}") for n in range(6)]
    await make_contact(last_name=f"Group {word}")
    session = await signed_in(server, admin.email)

    page = await session.get("/search", params={"q": word}, headers=HTML)
    ticket_page = await session.get(
        "/search", params={"q": word, "type": "ticket", "size": "4"}, headers=HTML
    )
    second = await session.get(
        "/search",
        params={"q": word, "type": "ticket", "size": "4", "page": "2"},
        headers=HTML,
    )

    assert page.status_code == 200
    accounts = re.search(r'id="hits-account".*?</section>', page.text, re.S)
    assert accounts is not None
    assert accounts.group(0).count('class="hit-name"') == 5
    assert f'href="/accounts?q={word}"' in accounts.group(0)
    assert f'href="/search?q={word}&amp;type=ticket"' in page.text
    contacts = re.search(r'id="hits-contact".*?</section>', page.text, re.S)
    assert contacts is not None
    assert "more-hits" not in contacts.group(0)
    assert ticket_page.status_code == 200
    assert ticket_page.text.count('class="hit-name"') == 4
    assert second.text.count('class="hit-name"') == 2
    shown = set(re.findall(r'href="/tickets/(\d+)"', ticket_page.text + second.text))
    assert shown == {str(ticket) for ticket in tickets}
    await session.close()


async def test_suggestions_need_two_characters(server) -> None:
    admin = await make_user("admin")
    word = tag()
    account = await make_account(name=f"Suggested {word}")
    session = await signed_in(server, admin.email)

    short = await session.get("/search/suggest", params={"q": "s"})
    found = await session.get("/search/suggest", params={"q": word})
    missing = await session.get("/search/suggest", params={"q": tag()})

    assert short.status_code == 200
    assert short.text == ""
    assert f'href="/accounts/{account}"' in found.text
    assert f'href="/search?q={word}"' in found.text
    assert "Nothing matches" in missing.text
    await session.close()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"q": "a", "type": "nope"}, "Type"),
        ({"q": "a", "type": "ticket"}, "Type"),
        ({"q": "x" * 300}, "Search"),
        ({"q": "a", "type": "deal", "page": "0"}, "Page"),
        ({"q": "a", "page": "2"}, "Page &#39;2&#39; needs a type"),
        ({"q": "a", "size": "10"}, "Size &#39;10&#39; needs a type"),
        ({"page": "2"}, "Page &#39;2&#39; needs a type"),
    ],
)
async def test_search_page_rejects_invalid_parameters(
    server, params: dict[str, str], named: str
) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    session = await signed_in(server, rep.email)

    response = await session.get("/search", params=params, headers=HTML)

    assert response.status_code == 400
    assert named in response.text
    await session.close()


async def test_search_page_names_types_to_page(server) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    session = await signed_in(server, rep.email)

    response = await session.get("/search", params={"q": "a", "page": "2"})
    blank_page = await session.get("/search", params={"q": "a", "page": ""})
    await session.close()

    assert response.status_code == 400
    assert "Add type, one of account, contact, deal, lead." in response.text
    assert blank_page.status_code == 200


async def test_search_page_prefills_top_bar(server) -> None:
    admin = await make_user("admin")
    word = tag()
    session = await signed_in(server, admin.email)

    page = await session.get("/search", params={"q": f" {word}  x"}, headers=HTML)
    by_type = await session.get(
        "/search", params={"q": word, "type": "deal"}, headers=HTML
    )
    elsewhere = await session.get("/tasks", headers=HTML)
    await session.close()

    assert page.status_code == 200
    assert re.search(rf'id="top-search-q"[^>]*value="{word} x"', page.text)
    assert re.search(rf'id="top-search-q"[^>]*value="{word}"', by_type.text)
    assert re.search(r'id="top-search-q"[^>]*value=""', elsewhere.text)


async def test_unsearchable_role_gets_no_box(server) -> None:
    role = Role(
        name=f"campaigns_only_{uuid.uuid4().hex[:8]}",
        label="Campaigns only",
        permissions={"campaign": {"read": "all"}},
        field_rules={},
    )
    await role.save()
    user = await make_user(role.name)
    session = await signed_in(server, user.email)

    page = await session.get("/search", params={"q": "anything"}, headers=HTML)
    tasks = await session.get("/tasks", headers=HTML)

    assert page.status_code == 200
    assert "nothing to search" in page.text
    assert 'class="top-search"' not in tasks.text
    await session.close()


async def api_search(server: Any, token: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.get("/api/v1/search", params=params, headers=bearer(token))


async def test_api_search_pages_by_type(server) -> None:
    admin = await make_user("admin")
    word = tag()
    accounts = [await make_account(name=f"Api {word} {n}") for n in range(3)]
    contacts = [await make_contact(last_name=f"Api {word} {n}") for n in range(2)]
    key = await create_key(
        admin.id, "Search", {"account": "read", "contact": "read"}, None
    )

    first = await api_search(server, key.token, q=word, limit="2")
    second = await api_search(server, key.token, q=word, limit="2", page="2")
    third = await api_search(server, key.token, q=word, limit="2", page="3")

    assert first.status_code == 200
    body = first.json()
    assert body["totals"] == {"account": 3, "contact": 2}
    assert [(hit["type"], hit["id"]) for hit in body["data"]] == [
        ("account", accounts[0]),
        ("account", accounts[1]),
    ]
    assert body["next"] == f"/api/v1/search?q={word}&page=2&limit=2"
    assert first.headers["link"] == f'<{body["next"]}>; rel="next"'
    assert [(hit["type"], hit["id"]) for hit in second.json()["data"]] == [
        ("account", accounts[2]),
        ("contact", contacts[0]),
    ]
    assert [hit["id"] for hit in third.json()["data"]] == [contacts[1]]
    assert third.json()["next"] is None
    hit = body["data"][0]
    assert hit["url"] == f"/accounts/{accounts[0]}"
    assert hit["record"]["name"] == f"Api {word} 0"


async def test_api_search_key_scope_and_role(server) -> None:
    deals = await scoped_deals()
    word, own, other = deals.word, deals.own, deals.other
    account = await make_account(name=f"Account {word}")
    rep_key = await create_key(
        deals.rep.id, "Search", {"deal": "read", "ticket": "read"}, None
    )
    agent_key = await create_key(deals.agent.id, "Search", {"deal": "read"}, None)

    rep_all = await api_search(server, rep_key.token, q=word)
    rep_tickets = await api_search(server, rep_key.token, q=word, type="ticket")
    rep_accounts = await api_search(server, rep_key.token, q=word, type="account")
    agent_deals = await api_search(server, agent_key.token, q=word, type="deal")

    assert rep_all.status_code == 200
    assert rep_all.json()["totals"] == {"deal": 1}
    assert [hit["id"] for hit in rep_all.json()["data"]] == [own]
    assert rep_all.json()["data"][0]["record"]["amount"] == HIDDEN_AMOUNT
    assert account not in [hit["id"] for hit in rep_all.json()["data"]]
    assert rep_tickets.status_code == 403
    assert "role" in rep_tickets.json()["detail"]
    assert rep_accounts.status_code == 403
    assert "API key" in rep_accounts.json()["detail"]
    assert agent_deals.status_code == 200
    assert sorted(hit["id"] for hit in agent_deals.json()["data"]) == sorted(
        [own, other]
    )
    assert all("amount" not in hit["record"] for hit in agent_deals.json()["data"])
    assert not shows_hidden_amount(agent_deals.text)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "a", "type": "nope"}, "type"),
        ({"q": "a", "page": "0"}, "page"),
        ({"q": "a", "limit": "500"}, "limit"),
        ({"q": "a", "sort": "name"}, "sort"),
    ],
)
async def test_api_search_rejects_invalid_parameters(
    server, params: dict[str, str], field: str
) -> None:
    admin = await make_user("admin")
    key = await create_key(admin.id, "Search", {"account": "read"}, None)

    response = await api_search(server, key.token, **params)

    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_account_list_finds_phone(server) -> None:
    admin = await make_user("admin")
    digits = f"6{uuid.uuid4().int % 10**9:09d}"
    spaced = f"{digits[:3]} {digits[3:6]}-{digits[6:]}"
    rows = await Account.insert(
        Account(name=f"Phone list {tag()}", phone=spaced)
    ).returning(Account.id)
    session = await signed_in(server, admin.email)

    listed = await session.get("/accounts", params={"q": digits}, headers=HTML)

    assert f'href="/accounts/{rows[0]["id"]}"' in listed.text
    await session.close()
