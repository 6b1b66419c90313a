"""A deal moved through one web process reaches pages on every process."""

from __future__ import annotations

import pytest

from app.deals.tables import Deal
from tests.browserless import Session
from tests.factories import make_deal, make_pipeline, make_user
from tests.live_frames import next_event
from tests.servers import web_server


@pytest.fixture(scope="module")
def servers():
    with web_server() as first, web_server() as second:
        yield first, second


async def test_move_reaches_sockets_on_both_processes(servers) -> None:
    first, second = servers
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, stage_index=0, amount="2500")
    from_stage, to_stage = pipeline["stages"][0], pipeline["stages"][1]

    writer = Session(first.url)
    watcher = Session(second.url)
    await writer.sign_in(user.email)
    await watcher.sign_in(user.email)
    socket = await watcher.live(f"topic=pipeline:{pipeline['id']}")

    response = await writer.post(
        f"/deals/{deal_id}/stage", {"stage": to_stage, "from_stage": from_stage}
    )
    assert response.status_code == 204

    message = await next_event(socket)
    assert f'id="deal-{deal_id}" hx-swap-oob="delete"' in message
    assert f"afterbegin:#stage-{to_stage}-cards" in message
    assert f'id="stage-{from_stage}-head"' in message
    assert f'id="stage-{to_stage}-head"' in message
    assert "$2,500" in message

    await socket.close()
    await writer.close()
    await watcher.close()


async def test_stale_move_is_refused_and_card_restored(servers) -> None:
    first, _ = servers
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, stage_index=0)
    session = Session(first.url)
    await session.sign_in(user.email)
    prospecting, engaging, won = pipeline["stages"][:3]

    moved = await session.post(
        f"/deals/{deal_id}/stage", {"stage": engaging, "from_stage": prospecting}
    )
    assert moved.status_code == 204

    stale = await session.post(
        f"/deals/{deal_id}/stage", {"stage": won, "from_stage": prospecting}
    )
    assert stale.status_code == 409
    assert f"afterbegin:#stage-{engaging}-cards" in stale.text
    assert "meanwhile" in stale.text

    stored = await Deal.select(Deal.stage).where(Deal.id == deal_id).first()
    assert stored["stage"] == engaging
    await session.close()


async def test_move_to_unknown_stage_names_the_stage(servers) -> None:
    first, _ = servers
    user = await make_user()
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    session = Session(first.url)
    await session.sign_in(user.email)

    response = await session.post(
        f"/deals/{deal_id}/stage",
        {"stage": 999999, "from_stage": pipeline["stages"][0]},
    )

    assert response.status_code == 409
    assert "Stage 999999 does not exist" in response.text
    stored = (
        await Deal.select(Deal.stage, Deal.version).where(Deal.id == deal_id).first()
    )
    assert stored["stage"] == pipeline["stages"][0]
    assert stored["version"] == 1
    await session.close()
