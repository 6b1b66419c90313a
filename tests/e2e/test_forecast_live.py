"""The forecast page's totals follow deals moved in another browser context."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from app.forecast.figures import Period
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_team, make_user
from tests.integration.test_forecast import add_deal, make_forecast_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 1000
MOVE = """async ([dealId, toStage, fromStage]) => {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const body = new URLSearchParams({stage: toStage, from_stage: fromStage});
  const response = await fetch(`/deals/${dealId}/stage`, {
    method: "POST", body, headers: {"x-csrftoken": token, "hx-request": "true"},
  });
  return response.status;
}"""


def figure(name: str) -> str:
    return f"#forecast-totals .forecast-summary [data-figure={name}]"


async def test_totals_follow_moved_deal(browser, server) -> None:
    team = await make_team()
    manager = await make_user("sales_manager", team=team)
    mover = await make_user("sales_manager", team=team)
    pipeline = await make_forecast_pipeline()
    stages = pipeline["stages"]
    today = dt.datetime.now(dt.UTC).date()
    deal = await add_deal(
        pipeline, "Proposal", "1000", owner=manager.id, team=team, close_date=today
    )
    month = Period.containing(today, "month")
    context_a, viewer = await signed_in_page(browser, server, manager.email)
    context_b, other = await signed_in_page(browser, server, mover.email)
    await viewer.goto(
        f"/forecast?period={month.key}&group=owner&pipeline={pipeline['id']}"
    )
    await other.goto(f"/pipelines/{pipeline['id']}")
    await wait_live(viewer)
    assert await viewer.text_content(figure("weighted")) == "$400"
    assert await viewer.text_content(figure("commit")) == "$0"

    started = time.monotonic()
    status = await other.evaluate(
        MOVE, [deal, stages["Negotiation"], stages["Proposal"]]
    )
    assert status == 204
    await wait_until(
        viewer,
        "(selector) => document.querySelector(selector).textContent === '$800'",
        figure("weighted"),
        timeout_ms=LIVE_TIMEOUT_MS,
    )
    moved = time.monotonic() - started

    status = await other.evaluate(MOVE, [deal, stages["Won"], stages["Negotiation"]])
    assert status == 204
    await wait_until(
        viewer,
        "(selector) => document.querySelector(selector).textContent === '$1,000'",
        figure("closed_won"),
        timeout_ms=LIVE_TIMEOUT_MS,
    )

    assert moved < 1.0
    assert await viewer.text_content(figure("commit")) == "$1,000"
    assert await viewer.text_content(figure("weighted")) == "$0"
    await context_a.close()
    await context_b.close()
