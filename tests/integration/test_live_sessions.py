"""Open sockets end with their sessions, and pages can tell a refused socket
from a lost network."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from tests.browserless import Session
from tests.factories import make_pipeline, make_user
from tests.servers import web_server

IDLE_SECONDS = 2
CLOSE_SIGNED_OUT = 4401


@pytest.fixture(scope="module")
def server():
    env = {
        "SESSION_IDLE_TIMEOUT": str(IDLE_SECONDS),
        "CRM_SESSION_CHECK_INTERVAL": "0.5",
    }
    with web_server(env=env) as running:
        yield running


async def closing_code(socket, seconds: float) -> int | None:
    """Read until the server closes the socket; return its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(seconds):
            while True:
                await socket.recv()
    return closed.value.rcvd.code if closed.value.rcvd else None


async def test_idle_session_socket_is_closed(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await session.live(f"topic=pipeline:{pipeline['id']}")

    code = await closing_code(socket, IDLE_SECONDS + 5)
    status = await session.get("/live/status", headers={"accept": "application/json"})

    assert code == CLOSE_SIGNED_OUT
    assert status.status_code == 401
    await session.close()


async def test_status_answers_while_the_session_lasts(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    signed_in = await session.get(
        "/live/status", headers={"accept": "application/json"}
    )
    await session.post("/logout", {}, htmx=False)
    signed_out = await session.get(
        "/live/status", headers={"accept": "application/json"}
    )

    assert signed_in.status_code == 204
    assert signed_out.status_code == 401
    await session.close()


async def test_socket_of_a_session_in_use_stays_open(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await session.live(f"topic=pipeline:{pipeline['id']}")

    # Requests keep the session from going idle; the socket outlives two
    # idle periods.
    for _ in range(4):
        await asyncio.sleep(IDLE_SECONDS / 2)
        assert (await session.get("/live/status")).status_code == 204
    assert socket.close_code is None
    await socket.close()
    await session.close()
