"""The deal list: filters, orders, scopes, hidden amounts, its export link and
its live rows."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import pytest
import websockets

from app.access.permissions import SYSTEM
from app.access.tables import Role
from app.auth.service import CurrentUser
from app.deals.list_live import FILTERS_PER_QUERY, passing_filters
from app.deals.listing import DealListFilter, list_deals
from app.deals.tables import Deal
from app.errors import FieldError
from app.pagination import PageRequest
from app.web.templating import NO_VALUE
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    make_account,
    make_deal,
    make_pipeline,
    make_role,
    make_team,
    make_user,
    shows_hidden_amount,
)
from tests.live_frames import next_event

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

HTML = {"accept": "text/html"}
# Stages of the pipeline that tests.factories.make_pipeline creates.
PROSPECTING, ENGAGING, WON, LOST = range(4)
DAY = dt.date(2031, 3, 1)
# What a pushed fragment carries when a row leaves a page, which then fetches
# its rows again (templates/deals/_list_row_removed.html).
REFETCH = 'hx-get="/deals"'
SORT_LINK = re.compile(r'<th scope="col"[^>]*>\s*<a href="/deals\?([^"]*)"')


def tag() -> str:
    return f"dl{uuid.uuid4().hex[:10]}"


async def listed(deal_filter: DealListFilter, access: Any = SYSTEM) -> list[int]:
    page = await list_deals(deal_filter, PageRequest(size=200), access)
    return [row["id"] for row in page.rows]


def row_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'id="deal-row-(\d+)"', html)]


async def signed_in(server: Any, email: str) -> Session:
    session = Session(server.url)
    await session.sign_in(email)
    return session


async def test_deal_list_filters() -> None:
    word = tag()
    team, other_team = await make_team(), await make_team()
    owner = await make_user("sales_rep", team=team)
    pipeline = await make_pipeline()
    other_pipeline = await make_pipeline()
    early = await make_deal(
        pipeline,
        PROSPECTING,
        name=f"Early {word}",
        owner=owner.id,
        team=team,
        close_date=DAY,
    )
    won = await make_deal(
        pipeline,
        WON,
        name=f"Won {word}",
        team=other_team,
        close_date=DAY.replace(day=20),
    )
    lost = await make_deal(pipeline, LOST, name=f"Lost {word}", close_date=None)
    elsewhere = await make_deal(other_pipeline, ENGAGING, name=f"Elsewhere {word}")

    def parse(**params: str) -> DealListFilter:
        return DealListFilter.parse(word, **params)

    assert sorted(await listed(parse())) == sorted([early, won, lost, elsewhere])
    assert sorted(await listed(parse(pipeline=str(pipeline["id"])))) == sorted(
        [early, won, lost]
    )
    assert await listed(parse(stage=str(pipeline["stages"][WON]))) == [won]
    assert sorted(await listed(parse(status="open"))) == sorted([early, elsewhere])
    assert await listed(parse(status="won")) == [won]
    assert await listed(parse(status="lost")) == [lost]
    assert await listed(parse(person=str(owner.id))) == [early]
    assert await listed(parse(team=str(other_team))) == [won]
    assert await listed(parse(close_from="2031-03-02")) == [won]
    assert await listed(parse(close_to="2031-03-01")) == [early]
    assert sorted(
        await listed(parse(close_from="2031-03-01", close_to="2031-03-31"))
    ) == sorted([early, won])
    assert await listed(DealListFilter.parse(f"won {word}")) == [won]


async def test_deal_list_sorts_empty_last() -> None:
    word = tag()
    pipeline = await make_pipeline()
    small = await make_deal(
        pipeline, name=f"b {word}", amount="10", close_date=DAY.replace(day=3)
    )
    large = await make_deal(
        pipeline, name=f"C {word}", amount="900", close_date=DAY.replace(day=2)
    )
    empty = await make_deal(pipeline, name=f"a {word}", close_date=None)
    await Deal.update({Deal.amount: None}).where(Deal.id == empty)

    def order(sort: str) -> DealListFilter:
        return DealListFilter.parse(word, sort=sort)

    assert await listed(order("name")) == [empty, small, large]
    assert await listed(order("-name")) == [large, small, empty]
    assert await listed(order("amount")) == [small, large, empty]
    assert await listed(order("-amount")) == [large, small, empty]
    assert await listed(order("close_date")) == [large, small, empty]
    assert await listed(order("-close_date")) == [small, large, empty]
    assert await listed(order("-updated")) == [empty, large, small]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "closed"}, "status"),
        ({"sort": "owner"}, "sort"),
        ({"close_from": "March"}, "close_from"),
        ({"close_from": "2031-03-02", "close_to": "2031-03-01"}, "close_to"),
        ({"stage": "0"}, "stage"),
        ({"person": "abc"}, "person"),
    ],
)
async def test_deal_filter_rejects_invalid_values(
    params: dict[str, str], field: str
) -> None:
    with pytest.raises(FieldError) as raised:
        DealListFilter.parse("", **params)

    assert raised.value.field == field


async def test_deal_list_team_scope(server) -> None:
    word = tag()
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    colleague = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    pipeline = await make_pipeline()
    own = await make_deal(pipeline, owner=rep.id, team=team, name=f"Own {word}")
    shared = await make_deal(
        pipeline, owner=colleague.id, team=team, name=f"Team {word}"
    )
    other = await make_deal(
        pipeline, owner=outsider.id, team=other_team, name=f"Other {word}"
    )
    session = await signed_in(server, rep.email)

    page = await session.get("/deals", params={"q": word}, headers=HTML)
    by_team = await session.get(
        "/deals", params={"q": word, "team": str(other_team)}, headers=HTML
    )

    assert page.status_code == 200
    assert sorted(row_ids(page.text)) == sorted([own, shared])
    assert f"/deals/{other}" not in page.text
    assert 'role="status">2 deals' in page.text
    assert row_ids(by_team.text) == []
    await session.close()


async def test_agent_deal_list_hides_amounts(server) -> None:
    word = tag()
    agent = await make_user("support_agent", team=await make_team())
    manager = await make_user("sales_manager", team=await make_team())
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, amount=HIDDEN_AMOUNT, name=f"Hidden {word}")
    agent_session = await signed_in(server, agent.email)
    manager_session = await signed_in(server, manager.email)

    agent_page = await agent_session.get("/deals", params={"q": word}, headers=HTML)
    by_amount = await agent_session.get(
        "/deals", params={"q": word, "sort": "-amount"}, headers=HTML
    )
    manager_page = await manager_session.get("/deals", params={"q": word}, headers=HTML)

    assert agent_page.status_code == 200
    assert row_ids(agent_page.text) == [deal]
    assert not shows_hidden_amount(agent_page.text)
    assert 'class="amount"' not in agent_page.text
    assert "sort=amount" not in agent_page.text
    assert by_amount.status_code == 400
    assert "Sort" in by_amount.text
    assert manager_page.status_code == 200
    assert shows_hidden_amount(manager_page.text)
    assert "sort=amount" in manager_page.text
    await agent_session.close()
    await manager_session.close()


async def test_deal_list_links_and_pages(server) -> None:
    word = tag()
    admin = await make_user("admin")
    team = await make_team()
    pipeline = await make_pipeline()
    account = await make_account(name=f"Account {word}")
    deals = [
        await make_deal(pipeline, name=f"Deal {word} {n}", team=team, account=account)
        for n in range(3)
    ]
    await make_deal(pipeline, name=f"Deal {word} elsewhere")
    session = await signed_in(server, admin.email)
    params = {
        "q": word,
        "pipeline": str(pipeline["id"]),
        "team": str(team),
        "sort": "name",
        "size": "2",
    }

    first = await session.get("/deals", params=params, headers=HTML)
    second = await session.get("/deals", params={**params, "page": "2"}, headers=HTML)
    board = await session.get(
        f"/pipelines/{pipeline['id']}", params={"team": str(team)}, headers=HTML
    )
    export_link = re.search(r'href="(/exports/deals\.csv[^"]*)"', first.text)
    assert export_link is not None
    exported = await session.get(export_link.group(1).replace("&amp;", "&"))

    assert row_ids(first.text) == deals[:2]
    assert row_ids(second.text) == deals[2:]
    assert 'rel="next"' in first.text
    assert f'href="/pipelines/{pipeline["id"]}?team={team}"' in first.text
    assert f'href="/deals?pipeline={pipeline["id"]}&amp;team={team}"' in board.text
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert sorted(int(row["id"]) for row in rows) == sorted(deals)
    await session.close()


async def make_dates_hidden_user() -> CurrentUser:
    """Create a user whose only role reads every deal but not its close date."""
    role = Role(
        name=f"dates_hidden_{uuid.uuid4().hex[:8]}",
        label="Dates hidden",
        permissions={"deal": {"read": "all"}},
        field_rules={"deal": {"close_date": "hidden"}},
    )
    await role.save()
    return await make_user(role.name)


async def test_hidden_field_filters_rejected(server) -> None:
    user = await make_dates_hidden_user()
    session = await signed_in(server, user.email)

    plain = await session.get("/deals", headers=HTML)
    by_date = await session.get(
        "/deals", params={"close_from": "2031-01-01"}, headers=HTML
    )
    by_order = await session.get("/deals", params={"sort": "close_date"}, headers=HTML)
    exported = await session.get(
        "/exports/deals.csv", params={"close_to": "2031-01-01"}
    )

    assert plain.status_code == 200
    assert 'name="close_from"' not in plain.text
    assert by_date.status_code == 400
    assert "Close from" in by_date.text
    assert by_order.status_code == 400
    assert exported.status_code == 400
    await session.close()


async def test_hidden_name_search_rejected(server) -> None:
    role = await make_role({"deal": {"read": "all"}}, {"deal": {"name": "hidden"}})
    user = await make_user(role)
    session = await signed_in(server, user.email)

    plain = await session.get("/deals", headers=HTML)
    searched = await session.get("/deals", params={"q": "acme"}, headers=HTML)
    exported = await session.get("/exports/deals.csv", params={"q": "acme"})
    await session.close()

    assert plain.status_code == 200
    assert 'placeholder="Deal name"' not in plain.text
    assert searched.status_code == 400
    assert "Search" in searched.text
    assert "deal name" in searched.text
    assert exported.status_code == 400


async def test_hidden_columns_left_out(server) -> None:
    word = tag()
    hidden = ["account", "stage", "close_date", "owner", "team"]
    role = await make_role(
        {"deal": {"read": "all"}},
        {"deal": {name: "hidden" for name in ["name", *hidden]}},
    )
    viewer = await make_user(role)
    owner = await make_user(name=f"Owner {word}")
    team = await make_team(f"Team {word}")
    account = await make_account(name=f"Account {word}")
    pipeline = await make_pipeline((f"Stage {word}", "Won", "Lost"))
    deal = await make_deal(
        pipeline,
        name=f"Deal {word}",
        owner=owner.id,
        team=team,
        account=account,
        close_date=DAY,
    )
    session = await signed_in(server, viewer.email)

    response = await session.get(
        "/deals", params={"pipeline": str(pipeline["id"])}, headers=HTML
    )
    await session.close()

    assert response.status_code == 200
    assert row_ids(response.text) == [deal]
    row = response.text.split(f'id="deal-row-{deal}"')[1].split("</tr>")[0]
    assert ">(hidden)</a>" in row
    assert word not in response.text
    assert "Unassigned" not in row
    assert NO_VALUE not in row
    assert "01 Mar 2031" not in row
    for title in ("Account", "Stage", "Close date", "Owner", "Team"):
        assert f">{title}</th>" not in response.text
        assert f">{title}</a>" not in response.text


async def next_row_frame(socket: Any, deal_id: int) -> str:
    """Return the next frame that is about the deal's row."""
    async with asyncio.timeout(10):
        while True:
            frame = await next_event(socket, 10)
            if f"deal-row-{deal_id}" in frame:
                return frame


async def test_deal_list_rows_update_live(server) -> None:
    word = tag()
    team, other_team = await make_team(), await make_team()
    # The rep reads the deal through its team only, which the second edit
    # changes; the agent reads every deal.
    rep = await make_user("sales_rep", team=team)
    agent = await make_user("support_agent", team=team)
    admin = await make_user("admin")
    pipeline = await make_pipeline()
    deal = await make_deal(
        pipeline, owner=admin.id, team=team, amount=HIDDEN_AMOUNT, name=f"Live {word}"
    )
    viewers = {
        "rep": await signed_in(server, rep.email),
        "agent": await signed_in(server, agent.email),
    }
    editor = await signed_in(server, admin.email)
    topic = f"resume=1&topic=pipeline:{pipeline['id']}&view=deal-list&presence=false"
    sockets = {name: await session.live(topic) for name, session in viewers.items()}
    for socket in sockets.values():
        await socket.send('{"type": "resume", "streams": {}}')
        async with asyncio.timeout(10):
            while not str(await socket.recv()).startswith("#ready"):
                pass

    renamed = f"Renamed {word}"
    response = await editor.post(
        f"/deals/{deal}", {"name": renamed, "base_name": f"Live {word}"}
    )
    assert response.status_code == 200
    rep_frame = await next_row_frame(sockets["rep"], deal)
    agent_frame = await next_row_frame(sockets["agent"], deal)
    response = await editor.post(
        f"/deals/{deal}", {"team": str(other_team), "base_team": str(team)}
    )
    assert response.status_code == 200
    removed = await next_row_frame(sockets["rep"], deal)
    still_shown = await next_row_frame(sockets["agent"], deal)

    for socket in sockets.values():
        await socket.close()
    for session in (*viewers.values(), editor):
        await session.close()
    assert f'<tr id="deal-row-{deal}"' in rep_frame
    assert 'hx-swap-oob="true"' in rep_frame
    assert renamed in rep_frame
    assert shows_hidden_amount(rep_frame)
    assert renamed in agent_frame
    assert not shows_hidden_amount(agent_frame)
    assert 'class="amount"' not in agent_frame
    assert REFETCH in removed
    assert renamed not in removed
    assert 'hx-swap-oob="true"' in still_shown
    assert REFETCH not in still_shown


def sort_links(html: str) -> list[dict[str, str]]:
    """Return the query of each column head's sort link, by parameter name."""
    return [
        dict(parse_qsl(query.replace("&amp;", "&")))
        for query in SORT_LINK.findall(html)
    ]


async def test_sort_links_keep_filters_and_size(server) -> None:
    word = tag()
    team = await make_team()
    owner = await make_user("sales_rep", team=team)
    admin = await make_user("admin")
    pipeline = await make_pipeline()
    for number in range(3):
        await make_deal(
            pipeline,
            PROSPECTING,
            name=f"Sorted {word} {number}",
            owner=owner.id,
            team=team,
            close_date=DAY,
        )
    filters = {
        "q": word,
        "pipeline": str(pipeline["id"]),
        "stage": str(pipeline["stages"][PROSPECTING]),
        "status": "open",
        "person": str(owner.id),
        "team": str(team),
        "close_from": "2031-03-01",
        "close_to": "2031-03-31",
    }
    session = await signed_in(server, admin.email)

    page = await session.get(
        "/deals",
        params={**filters, "sort": "name", "size": "2", "page": "2"},
        headers=HTML,
    )
    default_size = await session.get("/deals", params=filters, headers=HTML)
    await session.close()

    assert page.status_code == 200
    links = sort_links(page.text)
    assert [link["sort"] for link in links] == [
        "-name",
        "amount",
        "close_date",
        "updated",
    ]
    for link in links:
        assert {name: link.get(name) for name in filters} == filters
        assert link["size"] == "2"
        assert "page" not in link
    assert default_size.status_code == 200
    assert [link.get("size") for link in sort_links(default_size.text)] == [None] * 4


async def ready_socket(session: Session, query: str) -> Any:
    socket = await session.live(query)
    await socket.send('{"type": "resume", "streams": {}}')
    async with asyncio.timeout(10):
        while not str(await socket.recv()).startswith("#ready"):
            pass
    return socket


async def test_deal_list_row_leaves_filter_live(server) -> None:
    word = tag()
    admin = await make_user("admin")
    manager = await make_user("sales_manager", team=await make_team())
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, name=f"Kept {word}")
    viewer = await signed_in(server, manager.email)
    editor = await signed_in(server, admin.email)
    topic = f"resume=1&topic=pipeline:{pipeline['id']}&view=deal-list&presence=false"
    filtered = await ready_socket(viewer, f"{topic}&q={word}&status=open")
    unfiltered = await ready_socket(viewer, topic)

    still = f"Still {word}"
    response = await editor.post(
        f"/deals/{deal}", {"name": still, "base_name": f"Kept {word}"}
    )
    assert response.status_code == 200
    kept_frame = await next_row_frame(filtered, deal)
    await next_row_frame(unfiltered, deal)
    unmatched = f"Unmatched {tag()}"
    response = await editor.post(
        f"/deals/{deal}", {"name": unmatched, "base_name": still}
    )
    assert response.status_code == 200
    left_frame = await next_row_frame(filtered, deal)
    unfiltered_frame = await next_row_frame(unfiltered, deal)

    for socket in (filtered, unfiltered):
        await socket.close()
    for session in (viewer, editor):
        await session.close()
    assert still in kept_frame
    assert REFETCH not in kept_frame
    assert REFETCH in left_frame
    assert unmatched not in left_frame
    assert unmatched in unfiltered_frame
    assert REFETCH not in unfiltered_frame


async def test_deal_list_socket_rejects_hidden_filter(server) -> None:
    user = await make_dates_hidden_user()
    pipeline = await make_pipeline()
    session = await signed_in(server, user.email)
    topic = f"topic=pipeline:{pipeline['id']}&view=deal-list&presence=false"

    socket = await session.live(f"{topic}&close_from=2031-01-01")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await socket.recv()
    invalid = await session.live(f"{topic}&status=closed")
    with pytest.raises(websockets.ConnectionClosed) as closed_invalid:
        async with asyncio.timeout(10):
            while True:
                await invalid.recv()
    await session.close()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "close_from" in closed.value.rcvd.reason
    assert closed_invalid.value.rcvd is not None
    assert closed_invalid.value.rcvd.code == 1008
    assert "status" in closed_invalid.value.rcvd.reason


async def test_passing_filters_in_batches() -> None:
    word = tag()
    pipeline = await make_pipeline()
    deal = await make_deal(pipeline, PROSPECTING, name=f"Batch {word}")
    matching = DealListFilter.parse(word, status="open")
    missing = DealListFilter.parse(word, status="won")
    checks = {
        (str(number), "view"): (matching if number % 3 else missing, SYSTEM)
        for number in range(FILTERS_PER_QUERY * 2 + 1)
    }

    passed = await passing_filters(deal, checks)
    deleted = await passing_filters(0, checks)

    assert passed == {key for key in checks if int(key[0]) % 3}
    assert deleted == set()
