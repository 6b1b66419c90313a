import uuid

import pytest

from app.events.service import (
    ALL_EVENTS_STREAM,
    change_set,
    events_after,
    relay_unpublished,
    stream_positions,
)
from app.events.tables import Event


def stream(name: str) -> str:
    return f"{name}:{uuid.uuid4().hex[:8]}"


async def test_change_set_numbers_events_per_stream() -> None:
    board, record = stream("pipeline"), stream("deal")

    async with change_set(actor_id=None) as changes:
        changes.add("deal.updated", "deal", 1, [board, record], {"amount": [1, 2]})
        changes.add("deal.updated", "deal", 2, [board])

    first, second = changes.events
    assert first.id < second.id
    # Every event is also numbered in the stream of all events.
    assert first.seqs == {board: 1, record: 1, ALL_EVENTS_STREAM: first.seqs["*"]}
    assert second.seqs == {board: 2, ALL_EVENTS_STREAM: first.seqs["*"] + 1}
    assert first.changes == {"amount": [1, 2]}
    unused = stream("x")
    positions = await stream_positions([board, record, unused])
    assert positions == {board: 2, record: 1, unused: 0}


async def test_rolled_back_change_leaves_no_gap() -> None:
    board = stream("pipeline")
    before = await Event.count()
    records_before = (await stream_positions([ALL_EVENTS_STREAM]))[ALL_EVENTS_STREAM]

    with pytest.raises(RuntimeError):
        async with change_set() as changes:
            changes.add("deal.updated", "deal", 1, [board])
            await changes.write()
            raise RuntimeError("abort")

    async with change_set() as changes:
        changes.add("deal.updated", "deal", 1, [board])

    assert await Event.count() == before + 1
    assert changes.events[0].seqs == {board: 1, ALL_EVENTS_STREAM: records_before + 1}


async def test_events_after_replays_in_order() -> None:
    board = stream("tickets")
    for number in range(5):
        async with change_set() as changes:
            changes.add("ticket.updated", "ticket", number, [board])

    events, complete = await events_after(board, 2, limit=10)

    assert complete
    assert [event.seqs[board] for event in events] == [3, 4, 5]
    assert [event.record_id for event in events] == [2, 3, 4]


async def test_events_after_past_limit_needs_fresh_render() -> None:
    board = stream("tickets")
    for number in range(5):
        async with change_set() as changes:
            changes.add("ticket.updated", "ticket", number, [board])

    events, complete = await events_after(board, 0, limit=3)

    assert not complete
    assert events == []


async def test_events_after_when_up_to_date_is_empty() -> None:
    board = stream("tickets")
    async with change_set() as changes:
        changes.add("ticket.updated", "ticket", 1, [board])

    assert await events_after(board, 1, limit=10) == ([], True)
    assert await events_after(board, 7, limit=10) == ([], False)


async def test_relay_marks_unpublished_events() -> None:
    board = stream("pipeline")
    async with change_set() as changes:
        changes.add("deal.updated", "deal", 1, [board])
    event_id = changes.events[0].id

    # No bus is configured in this process, so the event stays unpublished.
    row = await Event.select(Event.published_at).where(Event.id == event_id).first()
    assert row["published_at"] is None
    assert await relay_unpublished(min_age_seconds=0) == 0
