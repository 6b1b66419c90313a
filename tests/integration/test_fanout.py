"""Many sockets on many streams, connecting at once: every delivery counted."""

from __future__ import annotations

import asyncio
import re

import pytest
import websockets

from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user
from tests.live_frames import next_event
from tests.servers import web_server

PIPELINES = 40
SOCKETS_PER_PIPELINE = 15
MOVES_PER_PIPELINE = 3


@pytest.fixture(scope="module")
def servers():
    with web_server() as first, web_server() as second:
        yield first, second


async def count_messages(socket, expected: int, seconds: float) -> int:
    received = 0
    try:
        async with asyncio.timeout(seconds):
            while received < expected:
                await next_event(socket, seconds)
                received += 1
    except TimeoutError:
        pass
    return received


async def test_every_socket_gets_every_event(servers) -> None:
    user = await make_user()
    pipelines = [await make_pipeline() for _ in range(PIPELINES)]
    deals = [await make_deal(pipeline) for pipeline in pipelines]
    sessions = [Session(server.url) for server in servers]
    for session in sessions:
        await session.sign_in(user.email)

    # All sockets connect concurrently, half on each web process.
    sockets = await asyncio.gather(
        *(
            sessions[number % 2].live(f"topic=pipeline:{pipeline['id']}")
            for pipeline in pipelines
            for number in range(SOCKETS_PER_PIPELINE)
        )
    )

    try:
        writer = sessions[0]
        for move in range(MOVES_PER_PIPELINE):
            for pipeline, deal_id in zip(pipelines, deals, strict=True):
                stages = pipeline["stages"]
                response = await writer.post(
                    f"/deals/{deal_id}/stage",
                    {"stage": stages[(move + 1) % 4], "from_stage": stages[move % 4]},
                )
                assert response.status_code == 204

        counts = await asyncio.gather(
            *(
                count_messages(socket, MOVES_PER_PIPELINE, seconds=10)
                for socket in sockets
            )
        )
        total = sum(counts)
        print(f"deliveries: {total} of {len(sockets) * MOVES_PER_PIPELINE}")

        assert total == len(sockets) * MOVES_PER_PIPELINE
        assert min(counts) == MOVES_PER_PIPELINE
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets))
        for session in sessions:
            await session.close()


async def test_socket_gets_only_its_streams(servers) -> None:
    user = await make_user()
    watched, other = await make_pipeline(), await make_pipeline()
    other_deal = await make_deal(other)
    watched_deal = await make_deal(watched)
    session = Session(servers[1].url)
    await session.sign_in(user.email)
    socket = await session.live(f"topic=pipeline:{watched['id']}")

    await session.post(
        f"/deals/{other_deal}/stage",
        {"stage": other["stages"][1], "from_stage": other["stages"][0]},
    )
    await session.post(
        f"/deals/{watched_deal}/stage",
        {"stage": watched["stages"][1], "from_stage": watched["stages"][0]},
    )

    message = await next_event(socket)
    assert re.search(rf'id="deal-{watched_deal}"', message)
    assert f"deal-{other_deal}" not in message
    await socket.close()
    await session.close()


async def test_unknown_stream_is_refused(servers) -> None:
    user = await make_user()
    session = Session(servers[0].url)
    await session.sign_in(user.email)

    socket = await session.live("topic=pipeline:999999")
    with pytest.raises(Exception) as closed:
        await asyncio.wait_for(socket.recv(), timeout=5)

    assert getattr(closed.value, "rcvd", None) is not None
    assert closed.value.rcvd.code == 1008
    await session.close()


async def test_socket_without_session_is_refused(servers) -> None:
    with pytest.raises(websockets.exceptions.WebSocketException):
        socket = await websockets.connect(f"{servers[0].ws_url}/live?topic=tickets")
        await asyncio.wait_for(socket.recv(), timeout=5)


async def test_sign_out_closes_sockets_on_every_process(servers) -> None:
    user = await make_user()
    first = Session(servers[0].url)
    await first.sign_in(user.email)
    other_tab = Session(servers[1].url)
    other_tab.http.cookies.set("session", first.http.cookies.get("session"))
    other_tab.http.cookies.set("csrftoken", first.csrf_token)
    near = await first.live("topic=tickets")
    far = await other_tab.live("topic=tickets")

    await first.post("/logout", {}, htmx=False)

    for socket in (near, far):
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await next_event(socket, 2)
        assert closed.value.rcvd.code == 4401
    await first.close()
    await other_tab.close()


async def test_other_sessions_keep_their_sockets(servers) -> None:
    user = await make_user()
    leaving, staying = Session(servers[0].url), Session(servers[1].url)
    await leaving.sign_in(user.email)
    await staying.sign_in(user.email)
    socket = await staying.live("topic=tickets")

    await leaving.post("/logout", {}, htmx=False)

    with pytest.raises(TimeoutError):
        await next_event(socket, 1)
    await socket.close()
    await leaving.close()
    await staying.close()


async def test_socket_from_another_origin_is_refused(servers) -> None:
    user = await make_user()
    session = Session(servers[0].url)
    await session.sign_in(user.email)

    with pytest.raises(websockets.exceptions.WebSocketException):
        socket = await websockets.connect(
            f"{servers[0].ws_url}/live?topic=tickets",
            additional_headers={
                "Cookie": session.cookie_header(),
                "Origin": "http://attacker.invalid",
            },
        )
        await next_event(socket, 2)
    await session.close()
