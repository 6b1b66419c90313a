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
