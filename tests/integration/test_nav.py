"""The main menu offers only the sections the signed-in user may read."""

from __future__ import annotations

import re

import pytest

from tests.browserless import Session
from tests.factories import make_team, make_user

pytestmark = pytest.mark.asyncio(loop_scope="session")

NAV = re.compile(r'<nav class="main-nav".*?</nav>', re.S)


async def nav_links(server, role: str) -> set[str]:
    user = await make_user(role, team=await make_team())
    session = Session(server.url)
    try:
        await session.sign_in(user.email)
        page = await session.get("/accounts")
    finally:
        await session.close()
    match = NAV.search(page.text)
    assert match is not None
    return set(re.findall(r'href="(/[a-z/]*)"', match.group(0)))


async def test_sales_rep_menu_has_no_tickets(server) -> None:
    links = await nav_links(server, "sales_rep")

    assert "/pipelines" in links
    assert "/leads" in links
    assert "/tickets" not in links


async def test_support_agent_menu_has_no_leads(server) -> None:
    links = await nav_links(server, "support_agent")

    assert "/tickets" in links
    assert "/leads" not in links
    assert "/campaigns" not in links


async def top_bar(server, user, path: str = "/tasks") -> str:
    session = Session(server.url)
    try:
        await session.sign_in(user.email)
        page = await session.get(path)
    finally:
        await session.close()
    match = re.search(r'<header class="top.*?</header>', page.text, re.S)
    assert match is not None
    return match.group(0)


async def test_phone_menu_repeats_main_menu(server) -> None:
    admin = await make_user("admin")
    header = await top_bar(server, admin)
    phone_menu = re.search(r'<nav class="nav-menu-links".*?</nav>', header, re.S)
    wide_menu = NAV.search(header)

    assert phone_menu is not None
    assert wide_menu is not None
    links = re.findall(r'href="(/[a-z/]*)"', wide_menu.group(0))
    assert re.findall(r'href="(/[a-z/]*)"', phone_menu.group(0)) == links
    assert "/admin/audit" in links
    assert 'class="top long-menu"' in header
    assert header.count('aria-current="page"') == 2
    assert '<a href="/tasks" aria-current="page">' in header


async def test_menu_marks_section_a_template_sets(server) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    header = await top_bar(server, rep, "/contacts")

    assert header.count('<a href="/contacts" aria-current="page">') == 2
    assert header.count('aria-current="page"') == 2


async def test_short_menu_is_not_long(server) -> None:
    agent = await make_user("support_agent", team=await make_team())
    header = await top_bar(server, agent)

    assert '<header class="top">' in header


async def test_user_menu_holds_account_links(server) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    header = await top_bar(server, rep)
    menu = re.search(r'<details class="top-menu user-menu">.*?</details>', header, re.S)

    assert menu is not None
    assert f'aria-label="User menu for {rep.name}"' in menu.group(0)
    assert 'href="/availability"' in menu.group(0)
    assert 'href="/security"' in menu.group(0)
    assert 'action="/logout"' in menu.group(0)


async def test_signed_out_page_has_no_menus(server) -> None:
    session = Session(server.url)
    try:
        page = await session.get("/login")
    finally:
        await session.close()

    assert page.status_code == 200
    assert "top-menu" not in page.text
    assert 'class="main-nav"' not in page.text
