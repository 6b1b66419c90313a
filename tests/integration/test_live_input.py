"""The live socket refuses out-of-range topics and positions cleanly."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.browserless import Session
from tests.factories import make_pipeline, make_user

CLOSE_POLICY_VIOLATION = 1008


async def test_topic_id_beyond_any_record_is_refused(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    for topic in ("pipeline:99999999999999999999", "deal:0", "ticket:-4"):
        socket = await session.live(f"topic={topic}")
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_POLICY_VIOLATION, topic
    await session.close()


async def test_position_beyond_a_bigint_is_ignored(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    topic = f"pipeline:{pipeline['id']}"
    session = Session(server.url)
    await session.sign_in(user.email)
    socket = await session.live(f"resume=1&topic={topic}")

    await socket.send(json.dumps({"type": "resume", "streams": {topic: 2**64}}))
    await socket.send(json.dumps({"type": "replay", "stream": topic, "after": -1}))
    await socket.send(json.dumps({"type": "resume", "streams": {topic: 0}}))
    async with asyncio.timeout(5):
        while not (await socket.recv()).startswith("#ready"):
            pass

    assert socket.close_code is None
    await socket.close()
    await session.close()
