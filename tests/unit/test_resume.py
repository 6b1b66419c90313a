"""Replays after a restart render each event once, however many pages ask."""

import asyncio

from realtime.messages import Event
from realtime.resume import rendered_for_replay


async def test_concurrent_replays_render_once() -> None:
    calls = 0

    async def renderer(event, topic, variants, cache):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return dict.fromkeys(variants, f"<p>{event.id}</p>")

    event = Event(
        id=987654,
        kind="deal.updated",
        topics=["deal:1"],
        record_type="deal",
        record_id=1,
        seqs={"deal:1": 3},
    )

    results = await asyncio.gather(
        *(rendered_for_replay(renderer, event, "deal:1", "") for _ in range(50))
    )

    assert calls == 1
    assert set(results) == {"<p>987654</p>"}
