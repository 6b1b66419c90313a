"""The lead board: columns in the viewer's scope, moves by drag and live cards."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import websockets

from app.boards import PAGE_SIZE
from app.events.tables import Event
from app.leads.service import convert_lead, create_lead, update_lead
from app.leads.tables import Lead
from app.merge import Edit
from app.workflows.jobs import close_queue
from tests.browserless import Session
from tests.factories import make_pipeline, make_team, make_user, unique
from tests.live_frames import next_event
from tests.servers import WebServer, web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that services open to queue rescoring."""
    yield
    await close_queue()


async def signed_in(server: WebServer, email: str) -> Session:
    session = Session(server.url)
    await session.sign_in(email)
    return session


async def lead_status(lead_id: int) -> str:
    row = await Lead.select(Lead.status).where(Lead.id == lead_id).first()
    assert row is not None
    return str(row["status"])


async def wait_until_published(lead_id: int, seconds: float = 10) -> None:
    """Wait for the server to relay the lead's events, so sockets opened next
    receive only the events that follow."""
    unpublished = Event.exists().where(
        (Event.record_type == "lead")
        & (Event.record_id == lead_id)
        & Event.published_at.is_null()
    )
    async with asyncio.timeout(seconds):
        while True:
            if not await unpublished:
                return
            await asyncio.sleep(0.05)


def column_of(page: str, lead_id: int) -> str | None:
    """Return the status column that shows the lead's card, or None."""
    for status, cards in re.findall(
        r'id="lead-status-(\w+)-cards"[^>]*>(.*?)</div>\s*</section>', page, re.S
    ):
        if f'id="lead-card-{lead_id}"' in cards:
            return str(status)
    return None


async def test_board_shows_leads_in_read_scope(server: WebServer) -> None:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    teammate = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=other_team)
    own = await create_lead({"name": unique("Own lead"), "company": "Acme"}, rep.id)
    shared = await create_lead(
        {"name": unique("Teammate lead"), "status": "working"}, teammate.id
    )
    hidden = await create_lead({"name": unique("Outside lead")}, outsider.id)
    session = await signed_in(server, rep.email)

    response = await session.get("/leads/board")
    page = response.text

    assert response.status_code == 200
    assert column_of(page, own) == "new"
    assert column_of(page, shared) == "working"
    assert column_of(page, hidden) is None
    assert "Acme" in page
    assert 'href="/leads"' in page
    # The teammate's lead is readable but not editable, so it cannot be dragged.
    card = re.search(rf'<article[^>]*id="lead-card-{shared}"[^>]*>', page)
    assert card is not None
    assert "data-locked" in card.group(0)
    own_card = re.search(rf'<article[^>]*id="lead-card-{own}"[^>]*>', page)
    assert own_card is not None
    assert "data-locked" not in own_card.group(0)
    list_page = await session.get("/leads")
    assert 'href="/leads/board"' in list_page.text
    await session.close()


async def test_board_column_pages_through_cards(server: WebServer) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    lead_ids = [
        await create_lead({"name": unique("Paged lead"), "status": "qualified"}, rep.id)
        for _ in range(PAGE_SIZE + 2)
    ]
    session = await signed_in(server, rep.email)

    page = (await session.get("/leads/board")).text
    more = re.search(r'hx-get="(/leads/board/columns/qualified\?after=[^"]+)"', page)
    assert more is not None
    rest = await session.get(more.group(1).replace("&amp;", "&"))
    first_ids = set(map(int, re.findall(r'id="lead-card-(\d+)"', page)))
    rest_ids = set(map(int, re.findall(r'id="lead-card-(\d+)"', rest.text)))

    assert rest.status_code == 200
    assert len(first_ids) == PAGE_SIZE
    assert first_ids | rest_ids == set(lead_ids)
    assert not first_ids & rest_ids
    assert f'<span class="count" data-count="{PAGE_SIZE + 2}">' in page
    bad = await session.get("/leads/board/columns/lost")
    assert bad.status_code == 400
    assert "lost" in bad.text
    await session.close()


async def test_move_changes_status(server: WebServer) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    lead_id = await create_lead({"name": unique("Moving lead")}, rep.id)
    session = await signed_in(server, rep.email)

    response = await session.post(
        f"/leads/{lead_id}/status", {"status": "working", "from_status": "new"}
    )

    assert response.status_code == 204
    assert await lead_status(lead_id) == "working"
    await session.close()


async def test_move_from_stale_status_conflicts(server: WebServer) -> None:
    manager = await make_user("sales_manager")
    rep = await make_user("sales_rep", team=await make_team())
    name = unique("Contested lead")
    lead_id = await create_lead({"name": name}, rep.id)
    await update_lead(lead_id, {"status": Edit("new", "qualified")}, manager.id)
    session = await signed_in(server, rep.email)

    response = await session.post(
        f"/leads/{lead_id}/status", {"status": "working", "from_status": "new"}
    )

    assert response.status_code == 409
    assert f'id="lead-card-{lead_id}" hx-swap-oob="delete"' in response.text
    assert 'hx-swap-oob="afterbegin:#lead-status-qualified-cards"' in response.text
    assert "changed the status of" in response.text
    assert "to qualified meanwhile" in response.text
    assert await lead_status(lead_id) == "qualified"
    await session.close()


async def test_move_to_converted_is_rejected(server: WebServer) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    lead_id = await create_lead({"name": unique("Not yet converted")}, rep.id)
    session = await signed_in(server, rep.email)

    response = await session.post(
        f"/leads/{lead_id}/status", {"status": "converted", "from_status": "new"}
    )

    assert response.status_code == 409
    assert "Status &#39;converted&#39; must be one of" in response.text
    assert 'afterbegin:#lead-status-new-cards"' in response.text
    assert await lead_status(lead_id) == "new"
    await session.close()


async def test_converted_lead_cannot_move(server: WebServer) -> None:
    admin = await make_user("admin")
    pipeline = await make_pipeline()
    lead_id = await create_lead({"name": unique("Won lead")}, admin.id)
    await convert_lead(lead_id, {"stage": str(pipeline["stages"][0])}, admin.id)
    session = await signed_in(server, admin.email)

    page = (await session.get("/leads/board")).text
    response = await session.post(
        f"/leads/{lead_id}/status", {"status": "working", "from_status": "converted"}
    )

    card = re.search(rf'<article[^>]*id="lead-card-{lead_id}"[^>]*>', page)
    assert card is not None
    assert "data-locked" in card.group(0)
    assert response.status_code == 409
    assert await lead_status(lead_id) == "converted"
    await session.close()


async def test_move_without_edit_right_is_forbidden(server: WebServer) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    teammate = await make_user("sales_rep", team=team)
    outsider = await make_user("sales_rep", team=await make_team())
    reader = await make_user("read_only")
    lead_id = await create_lead({"name": unique("Teammate's lead")}, teammate.id)
    move = {"status": "working", "from_status": "new"}
    rep_session = await signed_in(server, rep.email)
    reader_session = await signed_in(server, reader.email)
    outsider_session = await signed_in(server, outsider.email)

    by_rep = await rep_session.post(f"/leads/{lead_id}/status", move)
    by_reader = await reader_session.post(f"/leads/{lead_id}/status", move)
    by_outsider = await outsider_session.post(f"/leads/{lead_id}/status", move)
    reader_board = await reader_session.get("/leads/board")

    assert by_rep.status_code == 403
    assert by_reader.status_code == 403
    # Outside the read scope the lead does not exist for the viewer.
    assert by_outsider.status_code == 404
    assert reader_board.status_code == 200
    assert await lead_status(lead_id) == "new"
    for session in (rep_session, reader_session, outsider_session):
        await session.close()


async def test_move_pushes_card_to_board_viewers(server: WebServer) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    outsider = await make_user("sales_rep", team=await make_team())
    manager = await make_user("sales_manager")
    name = unique("Live lead")
    lead_id = await create_lead({"name": name, "company": "Globex"}, rep.id)
    await wait_until_published(lead_id)
    rep_session = await signed_in(server, rep.email)
    manager_session = await signed_in(server, manager.email)
    outsider_session = await signed_in(server, outsider.email)
    manager_socket = await manager_session.live("topic=lead-board")
    outsider_socket = await outsider_session.live("topic=lead-board")

    response = await rep_session.post(
        f"/leads/{lead_id}/status", {"status": "qualified", "from_status": "new"}
    )
    pushed = await next_event(manager_socket)
    unrelated = await next_event(outsider_socket)

    assert response.status_code == 204
    header, _, body = pushed.partition("\n")
    assert header.startswith("#seq lead-board ")
    assert f'id="lead-card-{lead_id}" hx-swap-oob="delete"' in body
    assert 'hx-swap-oob="afterbegin:#lead-status-qualified-cards"' in body
    assert name in body
    assert "Globex" in body
    assert 'id="lead-status-new-head" hx-swap-oob="true"' in body
    assert 'id="lead-status-qualified-head" hx-swap-oob="true"' in body
    # A viewer who cannot read the lead gets the sequence number only.
    outsider_header, _, outsider_body = unrelated.partition("\n")
    assert outsider_header == header
    assert outsider_body == ""
    for socket in (manager_socket, outsider_socket):
        await socket.close()
    for session in (rep_session, manager_session, outsider_session):
        await session.close()


async def test_reassigned_lead_leaves_team_board(server: WebServer) -> None:
    team, other_team = await make_team(), await make_team()
    rep = await make_user("sales_rep", team=team)
    teammate = await make_user("sales_rep", team=team)
    newcomer = await make_user("sales_rep", team=other_team)
    manager = await make_user("sales_manager")
    name = unique("Handed over lead")
    lead_id = await create_lead({"name": name}, teammate.id)
    await wait_until_published(lead_id)
    rep_session = await signed_in(server, rep.email)
    newcomer_session = await signed_in(server, newcomer.email)
    rep_socket = await rep_session.live("topic=lead-board")
    newcomer_socket = await newcomer_session.live("topic=lead-board")

    await update_lead(lead_id, {"owner": Edit(teammate.id, newcomer.id)}, manager.id)
    left = await next_event(rep_socket)
    joined = await next_event(newcomer_socket)

    assert f'id="lead-card-{lead_id}" hx-swap-oob="delete"' in left
    assert name not in left
    assert 'afterbegin:#lead-status-new-cards"' in joined
    assert name in joined
    for socket in (rep_socket, newcomer_socket):
        await socket.close()
    for session in (rep_session, newcomer_session):
        await session.close()


async def test_board_stream_needs_lead_read(server: WebServer) -> None:
    agent = await make_user("support_agent", team=await make_team())
    session = await signed_in(server, agent.email)

    page = await session.get("/leads/board")
    socket = await session.live("topic=lead-board")
    async with asyncio.timeout(5):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await socket.recv()

    assert page.status_code == 403
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    await session.close()
