"""Live pushes by access: scope changes move cards in and out, hidden fields
never travel, and changed rights close sockets on every process."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from app.access.service import UserChanges, set_active, update_user
from app.access.tables import Role
from app.deals.tables import Deal
from app.merge import Edit
from app.tickets.service import update_ticket
from tests.browserless import Session
from tests.factories import (
    HIDDEN_AMOUNT,
    make_deal,
    make_pipeline,
    make_team,
    make_ticket,
    make_user,
    shows_hidden_amount,
)
from tests.live_frames import next_event
from tests.servers import web_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def servers():
    with web_server() as first, web_server() as second:
        yield first, second


async def signed_in(url: str, email: str) -> Session:
    session = Session(url)
    await session.sign_in(email)
    return session


async def close_code(socket: websockets.ClientConnection, seconds: float = 5) -> int:
    async with asyncio.timeout(seconds):
        try:
            while True:
                await socket.recv()
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code


async def test_reassigned_ticket_leaves_and_joins_boards(servers) -> None:
    first, second = servers
    team_a, team_b, team_c = await make_team(), await make_team(), await make_team()
    agent_a = await make_user("support_agent", team=team_a)
    agent_b = await make_user("support_agent", team=team_b)
    agent_c = await make_user("support_agent", team=team_c)
    admin = await make_user("admin")
    ticket_id = await make_ticket("open", team=team_a, subject="Printer on fire")
    sessions = [
        await signed_in(first.url, agent_a.email),
        await signed_in(second.url, agent_b.email),
        await signed_in(second.url, agent_c.email),
    ]
    sockets = [await session.live("topic=tickets") for session in sessions]

    await update_ticket(ticket_id, {"team": Edit(team_a, team_b)}, admin.id)
    left, joined, unrelated = [await next_event(socket) for socket in sockets]

    assert f'id="ticket-{ticket_id}" hx-swap-oob="delete"' in left
    assert "Printer on fire" not in left
    assert "afterbegin:#status-open-cards" in joined
    assert "Printer on fire" in joined
    # The unrelated agent gets the sequence number and nothing else.
    header, _, body = unrelated.partition("\n")
    assert header.startswith("#seq tickets ")
    assert body == ""
    assert left.partition("\n")[0] == header
    for socket in sockets:
        await socket.close()
    for session in sessions:
        await session.close()


async def test_pushed_deal_hides_amount_from_support(servers) -> None:
    first, _ = servers
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount=HIDDEN_AMOUNT, name="Hidden sum deal")
    agent = await make_user("support_agent")
    manager = await make_user("sales_manager")
    agent_session = await signed_in(first.url, agent.email)
    manager_session = await signed_in(first.url, manager.email)
    topics = f"topic=pipeline:{pipeline['id']}&topic=deal:{deal_id}"
    agent_socket = await agent_session.live(topics)
    manager_socket = await manager_session.live(topics)

    await Deal.update({Deal.name: "Hidden sum deal, renamed"}).where(Deal.id == deal_id)
    admin_session = await signed_in(first.url, (await make_user("admin")).email)
    response = await admin_session.post(
        f"/deals/{deal_id}/stage",
        {"stage": pipeline["stages"][1], "from_stage": pipeline["stages"][0]},
    )
    assert response.status_code == 204
    agent_frames = [await next_event(agent_socket) for _ in range(2)]
    manager_frames = [await next_event(manager_socket) for _ in range(2)]

    assert any("Hidden sum deal" in frame for frame in agent_frames)
    for frame in agent_frames:
        assert not shows_hidden_amount(frame)
        assert 'class="total"' not in frame
    assert any("$987,654" in frame for frame in manager_frames)
    for socket in (agent_socket, manager_socket):
        await socket.close()
    await agent_session.close()
    await manager_session.close()
    await admin_session.close()


async def test_unreadable_stream_is_refused(servers) -> None:
    first, _ = servers
    team_a, team_b = await make_team(), await make_team()
    agent = await make_user("support_agent", team=team_a)
    rep = await make_user("sales_rep", team=team_a)
    other_ticket = await make_ticket("new", team=team_b)
    agent_session = await signed_in(first.url, agent.email)
    rep_session = await signed_in(first.url, rep.email)

    ticket_socket = await agent_session.live(f"topic=ticket:{other_ticket}")
    board_socket = await rep_session.live("topic=tickets")

    assert await close_code(ticket_socket) == 1008
    assert await close_code(board_socket) == 1008
    await agent_session.close()
    await rep_session.close()


async def test_role_change_closes_sockets_on_every_process(servers) -> None:
    first, second = servers
    team = await make_team()
    user = await make_user("support_agent", team=team)
    admin = await make_user("admin")
    lead_role = await Role.select(Role.id).where(Role.name == "support_lead").first()
    sessions = [
        await signed_in(first.url, user.email),
        await signed_in(second.url, user.email),
    ]
    sockets = [await session.live("topic=tickets") for session in sessions]

    changed = await update_user(
        user.id, UserChanges(role_ids=[lead_role["id"]]), admin.id
    )

    assert changed
    assert [await close_code(socket) for socket in sockets] == [4403, 4403]
    board = await sessions[0].get("/tickets")
    assert board.status_code == 200
    for session in sessions:
        await session.close()


async def test_deactivation_ends_sessions_and_sockets(servers) -> None:
    first, second = servers
    user = await make_user("read_only")
    admin = await make_user("admin")
    sessions = [
        await signed_in(first.url, user.email),
        await signed_in(second.url, user.email),
    ]
    sockets = [await session.live("topic=tickets") for session in sessions]

    await set_active(user.id, False, admin.id)

    assert [await close_code(socket) for socket in sockets] == [4401, 4401]
    for session in sessions:
        page = await session.get("/tickets", headers={"accept": "text/html"})
        assert page.status_code == 302
        assert page.headers["location"].startswith("/login")
        await session.close()


async def test_team_change_closes_sockets(servers) -> None:
    first, _ = servers
    team_a, team_b = await make_team(), await make_team()
    user = await make_user("support_agent", team=team_a)
    admin = await make_user("admin")
    session = await signed_in(first.url, user.email)
    socket = await session.live("topic=tickets")

    await update_user(
        user.id, UserChanges(team_ids=[team_b], primary_team=team_b), admin.id
    )

    assert await close_code(socket) == 4403
    await session.close()


async def test_record_page_tells_viewer_access_was_lost(servers) -> None:
    first, _ = servers
    team_a, team_b = await make_team(), await make_team()
    agent = await make_user("support_agent", team=team_a)
    admin = await make_user("admin")
    ticket_id = await make_ticket("open", team=team_a, subject="Leaving soon")
    session = await signed_in(first.url, agent.email)
    socket = await session.live(f"topic=ticket:{ticket_id}")

    await update_ticket(ticket_id, {"team": Edit(team_a, team_b)}, admin.id)
    frame = await next_event(socket)
    page = await session.get(f"/tickets/{ticket_id}")

    assert f'id="ticket-{ticket_id}-summary"' in frame
    assert "moved out of what your role lets you see" in frame
    assert "Leaving soon" not in frame
    assert page.status_code == 404
    await socket.close()
    await session.close()
