"""Win probability on deal pages: a trained model's figure with its factors,
the stage default without a model, hidden fields, and a live stage move."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from app.access.tables import Role
from app.deals.queries import win_chance
from app.deals.tables import Deal
from app.forecast import service
from tests.browserless import Session
from tests.factories import make_team, make_user
from tests.integration.test_forecast import add_deal, make_forecast_pipeline
from tests.live_frames import next_event

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

FACTOR_ITEM = re.compile(r'<li data-factor="(\w+)">([^<]*)</li>')
PERCENT = re.compile(r'data-field="win_probability">(?:Stage default )?(\d+) %<')


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def days_ago(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


@dataclass
class Trained:
    pipeline: dict[str, Any]
    team: int
    owner: Any
    other: Any


async def seed_varied_history(
    pipeline: dict[str, Any], first: int, second: int
) -> None:
    """Insert 300 deals closed over the past eight months and 60 left open.

    The first owner has two thirds of the closed deals and won half of
    them, the second owner a third of theirs. The open deals are in the
    first two stages, entered them 30 to 90 days ago and were never won, so
    the stage probability and days-in-stage features vary in training.
    """
    await Deal.raw(
        "INSERT INTO deal (name, pipeline, stage, amount, owner, team, "
        "engage_date, stage_entered_at) "
        "SELECT 'History ' || n, {}::int, "
        "CASE WHEN (n % 3 <> 0 AND n % 2 = 0) OR n % 9 = 0 "
        "THEN {}::int ELSE {}::int END, "
        "500 + (n * 37) % 5000, "
        "CASE WHEN n % 3 = 0 THEN {}::int ELSE {}::int END, NULL, "
        "(now() - make_interval(days => n * 240 / 300))::date - (10 + n % 60), "
        "now() - make_interval(days => n * 240 / 300) "
        "FROM generate_series(1, 300) AS n",
        pipeline["id"],
        pipeline["stages"]["Won"],
        pipeline["stages"]["Lost"],
        second,
        first,
    )
    await Deal.raw(
        "INSERT INTO deal (name, pipeline, stage, amount, owner, engage_date, "
        "stage_entered_at) "
        "SELECT 'Stalled ' || n, {}::int, "
        "CASE WHEN n % 2 = 0 THEN {}::int ELSE {}::int END, "
        "800 + (n * 53) % 4000, {}::int, "
        "(now() - make_interval(days => 100 + n * 3))::date, "
        "now() - make_interval(days => 30 + n) "
        "FROM generate_series(1, 60) AS n",
        pipeline["id"],
        pipeline["stages"]["Prospecting"],
        pipeline["stages"]["Proposal"],
        first,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trained() -> Trained:
    pipeline = await make_forecast_pipeline()
    team = await make_team()
    owner = await make_user("sales_rep", team=team)
    other = await make_user("sales_rep", team=team)
    await seed_varied_history(pipeline, owner.id, other.id)
    model = await service.train_pipeline(pipeline["id"], today())
    assert model is not None
    return Trained(pipeline, team, owner, other)


async def signed_in(server, role: str) -> Session:
    session = Session(server.url)
    await session.sign_in((await make_user(role)).email)
    return session


async def open_deal(trained: Trained, stage: str = "Negotiation") -> int:
    return await add_deal(
        trained.pipeline,
        stage,
        "40000",
        owner=trained.owner.id,
        team=trained.team,
        engage_date=today() - dt.timedelta(days=40),
        stage_entered_at=days_ago(20),
    )


async def forecast_chance(pipeline_id: int, deal_id: int) -> float:
    """Return the probability the forecast figures count for the deal."""
    deals = await service.load_facts(pipeline_id)
    return (await service.deal_chances(deals, today()))[deal_id]


async def test_page_shows_model_figure(server, trained: Trained) -> None:
    deal_id = await open_deal(trained)
    expected = await forecast_chance(trained.pipeline["id"], deal_id)
    session = await signed_in(server, "admin")
    try:
        response = await session.get(f"/deals/{deal_id}")
    finally:
        await session.close()

    assert response.status_code == 200
    shown = PERCENT.findall(response.text)
    assert shown == [str(round(100 * expected))]
    assert "Stage default" not in response.text
    assert "trained on 300 closed deals" in response.text
    factors = FACTOR_ITEM.findall(response.text)
    assert len(factors) == 3, factors
    for _, sentence in factors:
        assert re.search(r"\([+-]\d+ pts\)$", sentence), sentence


async def test_chance_matches_forecast(trained: Trained) -> None:
    deal_id = await open_deal(trained)

    chance = await win_chance(deal_id)

    assert chance is not None
    assert chance.from_model
    expected = await forecast_chance(trained.pipeline["id"], deal_id)
    assert chance.probability == pytest.approx(expected)
    points = [abs(factor.points) for factor in chance.factors]
    assert points == sorted(points, reverse=True)
    assert all(point > 0 for point in points)


async def test_factors_in_plain_words(trained: Trained) -> None:
    deal_id = await open_deal(trained)

    chance = await win_chance(deal_id)

    assert chance is not None
    words = {factor.group: factor.text for factor in chance.factors}
    # The seeded owner closed 200 deals and won half of them.
    if "owner" in words:
        assert words["owner"] == "Owner won 50 % of 200 closed deals"
    if "days_in_stage" in words:
        assert words["days_in_stage"] == "In this stage for 20 days"
    if "age" in words:
        assert words["age"] == "Open for 40 days"
    if "amount" in words:
        assert words["amount"] == "Amount of $40,000"
    if "stage" in words:
        assert words["stage"] == "Stage's fixed probability is 80 %"
    assert len(words) >= 3, words


async def test_hidden_amount_drops_factor(server, trained: Trained) -> None:
    deal_id = await open_deal(trained)
    chance = await win_chance(deal_id)
    assert chance is not None
    assert "amount" in [factor.group for factor in chance.factors]
    session = await signed_in(server, "support_agent")
    try:
        response = await session.get(f"/deals/{deal_id}")
    finally:
        await session.close()

    assert response.status_code == 200
    assert "$40,000" not in response.text
    shown = [group for group, _ in FACTOR_ITEM.findall(response.text)]
    assert "amount" not in shown
    expected = [factor.group for factor in chance.shown_factors({"amount"})]
    assert shown == expected


async def test_no_history_shows_stage_default(server) -> None:
    pipeline = await make_forecast_pipeline()
    for stage in ("Won", "Lost"):
        await add_deal(pipeline, stage, "1000")
    deal_id = await add_deal(pipeline, "Proposal", "1000")
    session = await signed_in(server, "admin")
    try:
        response = await session.get(f"/deals/{deal_id}")
    finally:
        await session.close()

    assert response.status_code == 200
    assert 'data-field="win_probability">Stage default 40 %<' in response.text
    assert "too few closed deals" in response.text
    assert FACTOR_ITEM.findall(response.text) == []


async def test_hidden_stage_hides_default(server) -> None:
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "1000")
    role = Role(
        name=f"stage_blind_{uuid.uuid4().hex[:6]}",
        label="Stage blind",
        permissions={"deal": {"read": "all"}},
        field_rules={"deal": {"stage": "hidden"}},
    )
    await role.save()
    session = await signed_in(server, role.name)
    try:
        response = await session.get(f"/deals/{deal_id}")
    finally:
        await session.close()

    assert response.status_code == 200
    assert "too few closed deals" in response.text
    assert "Stage default" not in response.text
    assert "40 %" not in response.text


async def test_closed_deal_hides_panel(server, trained: Trained) -> None:
    deal_id = await add_deal(trained.pipeline, "Won", "1000")
    session = await signed_in(server, "admin")
    try:
        response = await session.get(f"/deals/{deal_id}")
    finally:
        await session.close()

    assert response.status_code == 200
    assert f'id="deal-{deal_id}-chance" hidden' in response.text
    assert "Win probability" not in response.text


async def test_stage_move_updates_live(server, trained: Trained) -> None:
    deal_id = await open_deal(trained)
    before = round(100 * await forecast_chance(trained.pipeline["id"], deal_id))
    stages = trained.pipeline["stages"]
    viewer = await signed_in(server, "sales_manager")
    mover = await signed_in(server, "admin")
    socket = await viewer.live(f"topic=deal:{deal_id}")
    try:
        response = await mover.post(
            f"/deals/{deal_id}/stage",
            {"stage": stages["Proposal"], "from_stage": stages["Negotiation"]},
        )
        assert response.status_code == 204
        frame = await next_event(socket)
    finally:
        await socket.close()
        await viewer.close()
        await mover.close()

    after = round(100 * await forecast_chance(trained.pipeline["id"], deal_id))
    assert frame.startswith(f"#seq deal:{deal_id} ")
    assert f'id="deal-{deal_id}-chance" hx-swap-oob="true"' in frame
    assert PERCENT.findall(frame) == [str(after)]
    assert after != before
    assert len(FACTOR_ITEM.findall(frame)) == 3
