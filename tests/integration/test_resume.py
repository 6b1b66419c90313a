"""Pages that were away get exactly what they missed, in order, once."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.deals.service import move_deal
from app.deals.tables import Deal
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user
from tests.live_frames import next_event
from tests.servers import web_server

MISSED = 200


@pytest.fixture(scope="module")
def server():
    with web_server({"CRM_REPLAY_LIMIT": "500"}) as running:
        yield running


@pytest.fixture(scope="module")
def small_limit_server():
    with web_server({"CRM_REPLAY_LIMIT": "50"}) as running:
        yield running


async def frames_until_ready(socket, limit: int = 10_000) -> list[tuple[str, str, int]]:
    """Read frames up to the ready marker; return (kind, stream, seq) of each."""
    frames = []
    async with asyncio.timeout(30):
        while len(frames) < limit:
            text = await socket.recv()
            if not text.startswith("#"):
                continue
            header = text.split("\n", 1)[0]
            if header == "#ready":
                return frames
            kind, stream, seq = header[1:].split(" ")
            frames.append((kind, stream, int(seq)))
    return frames


async def resume(session: Session, topic: str, position: int):
    socket = await session.live(f"resume=1&topic={topic}")
    await socket.send(json.dumps({"type": "resume", "streams": {topic: position}}))
    return socket


async def make_moves(pipeline: dict, deal_id: int, count: int, actor_id: int) -> None:
    """Move the deal back and forth between the first two stages ``count`` times."""
    first, second = pipeline["stages"][:2]
    for _ in range(count):
        row = await Deal.select(Deal.stage).where(Deal.id == deal_id).first()
        target = second if row["stage"] == first else first
        await move_deal(deal_id, target, row["stage"], actor_id)


async def test_reconnect_replays_exactly_what_was_missed(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    topic = f"pipeline:{pipeline['id']}"
    session = Session(server.url)
    await session.sign_in(user.email)

    socket = await resume(session, topic, 0)
    assert await frames_until_ready(socket) == []
    await make_moves(pipeline, deal_id, 1, user.id)
    first = await next_event(socket)
    assert first.startswith(f"#seq {topic} 1\n")
    await socket.close()

    # Changes made while the page is away. This process has no bus, so
    # the events reach no socket live, but the log keeps them.
    await make_moves(pipeline, deal_id, MISSED, user.id)

    socket = await resume(session, topic, 1)
    frames = await frames_until_ready(socket)

    assert [seq for _, _, seq in frames] == list(range(2, MISSED + 2))
    assert {kind for kind, _, _ in frames} == {"seq"}
    await socket.close()
    await session.close()


async def test_far_behind_page_gets_fresh_render(small_limit_server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    topic = f"pipeline:{pipeline['id']}"
    await make_moves(pipeline, deal_id, 60, user.id)
    session = Session(small_limit_server.url)
    await session.sign_in(user.email)

    socket = await resume(session, topic, 0)
    frames = await frames_until_ready(socket)

    assert frames == [("snap", topic, 60)]
    await socket.close()
    await session.close()


async def test_events_after_snapshot_continue_in_order(small_limit_server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    topic = f"pipeline:{pipeline['id']}"
    await make_moves(pipeline, deal_id, 60, user.id)
    session = Session(small_limit_server.url)
    await session.sign_in(user.email)
    socket = await resume(session, topic, 0)
    await frames_until_ready(socket)

    stages = pipeline["stages"]
    response = await session.post(
        f"/deals/{deal_id}/stage", {"stage": stages[2], "from_stage": stages[0]}
    )
    assert response.status_code == 204

    live = await next_event(socket)
    assert live.startswith(f"#seq {topic} 61\n")
    await socket.close()
    await session.close()


async def test_relay_publishes_events_the_writer_never_published(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    topic = f"pipeline:{pipeline['id']}"
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await resume(session, topic, 0)
    await frames_until_ready(socket)

    # Committed here without a bus, as when a process dies right after commit.
    await make_moves(pipeline, deal_id, 1, user.id)

    relayed = await next_event(socket, 10)
    assert relayed.startswith(f"#seq {topic} 1\n")
    assert f'id="deal-{deal_id}"' in relayed
    await socket.close()
    await session.close()


async def test_gap_request_replays_the_range(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    topic = f"pipeline:{pipeline['id']}"
    await make_moves(pipeline, deal_id, 5, user.id)
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await resume(session, topic, 5)
    await frames_until_ready(socket)

    await socket.send(json.dumps({"type": "replay", "stream": topic, "after": 2}))

    frames = []
    for _ in range(3):
        text = await next_event(socket)
        frames.append(text.split("\n", 1)[0])
    assert frames == [f"#seq {topic} 3", f"#seq {topic} 4", f"#seq {topic} 5"]
    await socket.close()
    await session.close()
