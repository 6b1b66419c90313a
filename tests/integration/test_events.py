import pytest

from app.events.service import change_set
from app.events.tables import Event


async def test_change_set_writes_events_in_commit_order() -> None:
    async with change_set(actor_id=None) as changes:
        changes.add(
            "deal.updated", "deal", 1, ["pipeline:1", "deal:1"], {"amount": [1, 2]}
        )
        changes.add("deal.updated", "deal", 2, ["pipeline:1"], {})

    first, second = changes.events
    assert first.id < second.id
    assert first.topics == ["pipeline:1", "deal:1"]
    assert first.changes == {"amount": [1, 2]}


async def test_change_set_rolls_back_its_events() -> None:
    before = await Event.count()

    with pytest.raises(RuntimeError):
        async with change_set() as changes:
            changes.add("deal.updated", "deal", 1, ["deal:1"])
            await changes.write()
            raise RuntimeError("abort")

    assert await Event.count() == before
