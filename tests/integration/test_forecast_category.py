"""Forecast categories: the stage's default, edits through the service and the
JSON API, and commit and best case computed from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio

from app.api.keys import create_key
from app.deals.service import update_deal
from app.deals.tables import Deal
from app.errors import FieldError
from app.forecast import service
from app.forecast.figures import Period
from app.merge import Edit
from tests.factories import make_team, make_user, unique
from tests.integration.test_forecast import add_deal, make_forecast_pipeline

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest_asyncio.fixture(loop_scope="session")
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def month_totals(pipeline_id: int) -> service.Figures:
    admin = await make_user("admin", team=await make_team())
    view = await service.forecast_view(
        admin.access, Period.containing(today(), "month"), "owner", today(), pipeline_id
    )
    return view.total


async def test_categories_default_from_stage() -> None:
    pipeline = await make_forecast_pipeline()
    await add_deal(pipeline, "Won", "1000", close_date=today())
    await add_deal(pipeline, "Negotiation", "2000", close_date=today())
    await add_deal(pipeline, "Proposal", "400", close_date=today())
    await add_deal(pipeline, "Prospecting", "300", close_date=today())

    totals = await month_totals(pipeline["id"])

    assert totals.closed_won == Decimal("1000")
    # Negotiation (80 %) is commit and Proposal (40 %) best case.
    assert totals.commit == Decimal("3000")
    assert totals.best_case == Decimal("3400")
    assert totals.open_deals == 3


async def test_set_categories_drive_commit_and_best_case() -> None:
    pipeline = await make_forecast_pipeline()
    await add_deal(pipeline, "Won", "1000", close_date=today())
    committed = await add_deal(pipeline, "Prospecting", "500", close_date=today())
    hopeful = await add_deal(pipeline, "Prospecting", "200", close_date=today())
    dropped = await add_deal(pipeline, "Negotiation", "2000", close_date=today())
    await add_deal(pipeline, "Proposal", "400", close_date=today())
    owner = await make_user("admin")

    await update_deal(committed, {"forecast_category": Edit(None, "commit")}, owner.id)
    await update_deal(hopeful, {"forecast_category": Edit(None, "best_case")}, owner.id)
    await update_deal(dropped, {"forecast_category": Edit(None, "omitted")}, owner.id)
    totals = await month_totals(pipeline["id"])

    assert totals.commit == Decimal("1500")
    assert totals.best_case == Decimal("2100")
    # The omitted deal counts nowhere: 10 % of 700 plus 40 % of 400.
    assert totals.weighted == Decimal("230")
    assert totals.open_deals == 3


async def test_update_rejects_unknown_category() -> None:
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100")

    with pytest.raises(FieldError) as raised:
        await update_deal(deal_id, {"forecast_category": Edit(None, "maybe")}, None)

    assert raised.value.field == "forecast_category"
    assert "maybe" in str(raised.value)


async def test_empty_category_returns_to_stage() -> None:
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(
        pipeline, "Proposal", "100", forecast_category="commit", close_date=today()
    )

    await update_deal(deal_id, {"forecast_category": Edit("commit", "")}, None)
    row = await Deal.select(Deal.forecast_category).where(Deal.id == deal_id).first()
    totals = await month_totals(pipeline["id"])

    assert row is not None
    assert row["forecast_category"] is None
    assert totals.commit == Decimal("0")
    assert totals.best_case == Decimal("100")


async def test_api_reads_and_writes_category(api: httpx.AsyncClient) -> None:
    team = await make_team()
    rep = await make_user("sales_rep", team=team)
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100", owner=rep.id, team=team)
    issued = await create_key(rep.id, unique("Key"), {"deal": "write"}, None)
    headers = {"authorization": f"Bearer {issued.token}"}
    url = f"/api/v1/deals/{deal_id}"

    before = await api.get(url, headers=headers)
    patched = await api.patch(
        url,
        json={"forecast_category": "commit"},
        headers={**headers, "if-match": '"1"'},
    )
    invalid = await api.patch(
        url,
        json={"forecast_category": "certain"},
        headers={**headers, "if-match": '"2"'},
    )

    assert before.status_code == 200
    assert before.json()["forecast_category"] is None
    assert patched.status_code == 200
    assert patched.json()["forecast_category"] == "commit"
    assert invalid.status_code == 422
    assert invalid.json()["field"] == "forecast_category"
