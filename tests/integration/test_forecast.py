"""Forecast figures per owner, team and period on seeded deals, read scopes,
quotas, and the nightly job run by a real arq worker."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from app.deals.tables import Deal, Pipeline, Stage
from app.forecast import service
from app.forecast.figures import Period
from app.forecast.probability import MIN_CLOSED_DEALS
from app.forecast.tables import ForecastSnapshot, WinModelRecord
from tests.browserless import Session
from tests.factories import make_team, make_user, unique
from tests.servers import worker_process
from workers.connection import open_queue

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

STAGES = (
    ("Prospecting", "open", 10),
    ("Proposal", "open", 40),
    ("Negotiation", "open", 80),
    ("Won", "won", 100),
    ("Lost", "lost", 0),
)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def make_forecast_pipeline() -> dict[str, Any]:
    rows = await Pipeline.insert(Pipeline(name=unique("Forecast"))).returning(
        Pipeline.id
    )
    pipeline_id = rows[0]["id"]
    stages = {}
    for position, (name, kind, probability) in enumerate(STAGES):
        stage_rows = await Stage.insert(
            Stage(
                pipeline=pipeline_id,
                name=name,
                position=position,
                kind=kind,
                probability=probability,
            )
        ).returning(Stage.id)
        stages[name] = stage_rows[0]["id"]
    return {"id": pipeline_id, "stages": stages}


async def add_deal(
    pipeline: dict[str, Any], stage: str, amount: str, **values: Any
) -> int:
    rows = await Deal.insert(
        Deal(
            name=unique("Deal"),
            pipeline=pipeline["id"],
            stage=pipeline["stages"][stage],
            amount=Decimal(amount),
            **values,
        )
    ).returning(Deal.id)
    return rows[0]["id"]


@dataclass
class Seeded:
    pipeline: dict[str, Any]
    team_a: int
    team_b: int
    alice: Any
    bob: Any
    rep: Any
    support: Any


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded() -> Seeded:
    pipeline = await make_forecast_pipeline()
    team_a = await make_team()
    team_b = await make_team()
    alice = await make_user("sales_rep", name=unique("Alice"), team=team_a)
    bob = await make_user("sales_rep", name=unique("Bob"), team=team_b)
    rep = await make_user("sales_rep", name=unique("Rep"), team=team_a)
    support = await make_user("support_agent", team=team_a)
    day = today()
    next_month = Period.containing(day, "month").shifted(1).start
    # Alice: 1,000 won today, 2,000 in negotiation closing today (commit),
    # 500 prospecting closing next month.
    await add_deal(pipeline, "Won", "1000", owner=alice.id, team=team_a)
    await add_deal(
        pipeline, "Negotiation", "2000", owner=alice.id, team=team_a, close_date=day
    )
    await add_deal(
        pipeline,
        "Prospecting",
        "500",
        owner=alice.id,
        team=team_a,
        close_date=next_month,
    )
    # Bob: 1,000 in proposal without a close date, so expected now; a lost
    # deal counts nowhere.
    await add_deal(pipeline, "Proposal", "1000", owner=bob.id, team=team_b)
    await add_deal(pipeline, "Lost", "9000", owner=bob.id, team=team_b)
    return Seeded(pipeline, team_a, team_b, alice, bob, rep, support)


async def admin_user() -> Any:
    """Return an administrator with their access loaded."""
    return await make_user("admin", team=await make_team())


async def signed_in(server, user) -> Session:
    session = Session(server.url)
    await session.sign_in(user.email)
    return session


async def test_month_figures_of_pipeline(seeded: Seeded) -> None:
    admin = await admin_user()
    month = Period.containing(today(), "month")

    view = await service.forecast_view(
        admin.access, month, "owner", today(), seeded.pipeline["id"]
    )

    assert view.total.closed_won == Decimal("1000")
    assert view.total.commit == Decimal("3000")
    assert view.total.best_case == Decimal("4000")
    # No model for this pipeline: 80 % of 2,000 plus 40 % of 1,000.
    assert view.total.weighted == Decimal("2000")
    assert view.total.forecast == Decimal("3000")


async def test_figures_per_owner_and_team(seeded: Seeded) -> None:
    admin = await admin_user()
    month = Period.containing(today(), "month")
    pipeline_id = seeded.pipeline["id"]

    owners = await service.forecast_view(
        admin.access, month, "owner", today(), pipeline_id
    )
    teams = await service.forecast_view(
        admin.access, month, "team", today(), pipeline_id
    )

    alice = owners.groups[seeded.alice.id]
    bob = owners.groups[seeded.bob.id]
    assert (alice.closed_won, alice.commit, alice.best_case) == (
        Decimal("1000"),
        Decimal("3000"),
        Decimal("3000"),
    )
    assert alice.weighted == Decimal("1600")
    assert (bob.closed_won, bob.best_case, bob.weighted) == (
        Decimal("0"),
        Decimal("1000"),
        Decimal("400"),
    )
    assert teams.groups[seeded.team_a].best_case == Decimal("3000")
    assert teams.groups[seeded.team_b].best_case == Decimal("1000")


async def test_next_month_counts_dated_deal(seeded: Seeded) -> None:
    admin = await admin_user()
    following = Period.containing(today(), "month").shifted(1)

    view = await service.forecast_view(
        admin.access, following, "owner", today(), seeded.pipeline["id"]
    )

    assert view.total.closed_won == Decimal("0")
    # Prospecting (10 %) is in the pipeline category: out of best case.
    assert view.total.best_case == Decimal("0")
    assert view.total.open_deals == 1
    assert view.total.weighted == Decimal("50")


async def test_rep_sees_only_team_deals(seeded: Seeded) -> None:
    month = Period.containing(today(), "month")

    view = await service.forecast_view(
        seeded.rep.access, month, "owner", today(), seeded.pipeline["id"]
    )

    assert seeded.bob.id not in view.groups
    assert view.total.best_case == Decimal("3000")
    assert view.total.weighted == Decimal("1600")


async def test_totals_fragment_follows_scope(server, seeded: Seeded) -> None:
    session = await signed_in(server, seeded.rep)
    month = Period.containing(today(), "month")
    try:
        response = await session.get(
            f"/forecast/totals?period={month.key}&group=owner"
            f"&pipeline={seeded.pipeline['id']}"
        )
    finally:
        await session.http.aclose()

    assert response.status_code == 200
    assert seeded.alice.name in response.text
    assert seeded.bob.name not in response.text
    assert 'data-figure="best_case">$3,000<' in response.text


async def test_support_agent_gets_no_forecast(server, seeded: Seeded) -> None:
    session = await signed_in(server, seeded.support)
    try:
        page = await session.get("/forecast")
        totals = await session.get("/forecast/totals")
    finally:
        await session.http.aclose()

    assert page.status_code == 403
    assert totals.status_code == 403


async def test_bad_period_names_field(server, seeded: Seeded) -> None:
    session = await signed_in(server, seeded.rep)
    try:
        response = await session.get("/forecast?period=2026-13")
    finally:
        await session.http.aclose()

    assert response.status_code == 400
    assert "2026-13" in response.text


async def test_quota_sets_attainment(server, seeded: Seeded) -> None:
    admin = await admin_user()
    session = await signed_in(server, admin)
    month = Period.containing(today(), "month")
    try:
        saved = await session.post(
            "/admin/quotas",
            {"period": month.key, "owner": str(seeded.alice.id), "amount": "4,000"},
            htmx=False,
        )
        changed = await session.post(
            "/admin/quotas",
            {"period": month.key, "owner": str(seeded.alice.id), "amount": "2000"},
            htmx=False,
        )
        listed = await session.get(f"/admin/quotas?period={month.key}")
        totals = await session.get(
            f"/forecast/totals?period={month.key}&group=owner"
            f"&pipeline={seeded.pipeline['id']}"
        )
    finally:
        await session.http.aclose()

    assert saved.status_code == 302
    assert changed.status_code == 302
    assert seeded.alice.name in listed.text
    assert "$2,000" in listed.text
    row = totals.text.split(f'data-group="{seeded.alice.id}"')[1].split("</tr>")[0]
    assert 'data-figure="quota">$2,000<' in row
    assert 'data-figure="attainment">50.0 %<' in row


async def test_quota_rejects_bad_amount(server, seeded: Seeded) -> None:
    admin = await admin_user()
    session = await signed_in(server, admin)
    try:
        response = await session.post(
            "/admin/quotas",
            {"period": "2026-12", "team": str(seeded.team_a), "amount": "lots"},
            htmx=False,
        )
        both = await session.post(
            "/admin/quotas",
            {
                "period": "2026-12",
                "team": str(seeded.team_a),
                "owner": str(seeded.alice.id),
                "amount": "10",
            },
            htmx=False,
        )
        rep = await signed_in(server, seeded.rep)
        refused = await rep.post(
            "/admin/quotas",
            {"period": "2026-12", "team": str(seeded.team_a), "amount": "10"},
            htmx=False,
        )
        await rep.http.aclose()
    finally:
        await session.http.aclose()

    assert response.status_code == 422
    assert 'data-field="amount"' in response.text
    assert "lots" in response.text
    assert both.status_code == 422
    assert refused.status_code == 403


async def test_quarter_quota_sums_months(seeded: Seeded) -> None:
    quarter = Period.containing(dt.date(2031, 5, 10), "quarter")
    for month, amount in zip(quarter.months(), ("100", "200", "300"), strict=True):
        await service.set_quota(month, None, seeded.team_b, Decimal(amount), None)

    quotas = await service.quotas_for(quarter)

    assert quotas[("team", seeded.team_b)] == Decimal("600")
    await service.set_quota(quarter, None, seeded.team_b, Decimal("1000"), None)
    assert (await service.quotas_for(quarter))[("team", seeded.team_b)] == Decimal(
        "1000"
    )


async def seed_history(pipeline: dict[str, Any], owner: int, team: int) -> None:
    """Insert closed deals over the past eight months: enough for a model.

    Even-numbered deals are won. Each was engaged 10 to 70 days before it
    closed, so every monthly snapshot has deals open.
    """
    count = MIN_CLOSED_DEALS + 40
    await Deal.raw(
        "INSERT INTO deal (name, pipeline, stage, amount, owner, team, "
        "engage_date, stage_entered_at) "
        "SELECT 'History ' || n, {}::int, "
        "CASE WHEN n % 2 = 0 THEN {}::int ELSE {}::int END, "
        "1000 + n, {}::int, {}::int, "
        "(now() - make_interval(days => n * 240 / {}::int))::date - (10 + n % 60), "
        "now() - make_interval(days => n * 240 / {}::int) "
        "FROM generate_series(1, {}::int) AS n",
        pipeline["id"],
        pipeline["stages"]["Won"],
        pipeline["stages"]["Lost"],
        owner,
        team,
        count,
        count,
        count,
    )


# Longer than the job's own wait below, so that a worker still busy with
# earlier tests' jobs fails there, with a message, rather than here.
@pytest.mark.timeout(360)
async def test_worker_trains_and_snapshots(seeded: Seeded) -> None:
    history = await make_forecast_pipeline()
    await seed_history(history, seeded.alice.id, seeded.team_a)
    open_deal = await add_deal(
        history, "Proposal", "1000", owner=seeded.alice.id, team=seeded.team_a
    )

    queue = await open_queue(os.environ["REDIS_URL"], os.environ["REDIS_PREFIX"])
    try:
        with worker_process():
            job = await queue.enqueue_job("forecast_nightly")
            assert job is not None
            # Jobs queued by earlier tests in this run may come first.
            counts = await job.result(timeout=300)
    finally:
        await queue.aclose()

    assert counts["failed"] == 0
    assert counts["snapshots"] > 0
    assert await WinModelRecord.exists().where(WinModelRecord.pipeline == history["id"])
    assert not await WinModelRecord.exists().where(
        WinModelRecord.pipeline == seeded.pipeline["id"]
    )
    deals = await service.load_facts(history["id"])
    chances = await service.deal_chances(deals, today())
    assert 0.0 <= chances[open_deal] <= 1.0
    assert chances[open_deal] != pytest.approx(0.40)

    month = Period.containing(today(), "month")
    rows = await ForecastSnapshot.raw(
        "SELECT closed_won, commit, best_case, weighted FROM forecast_snapshot "
        "WHERE taken_on = {} AND period_kind = 'month' AND period_start = {} "
        "AND group_kind = 'pipeline' AND group_id = {}",
        today(),
        month.start,
        seeded.pipeline["id"],
    )
    assert len(rows) == 1
    assert rows[0]["closed_won"] == Decimal("1000")
    assert rows[0]["commit"] == Decimal("3000")
    assert rows[0]["best_case"] == Decimal("4000")
    assert rows[0]["weighted"] == Decimal("2000")
    owner_rows = await service.snapshot_history(month, "owner", seeded.bob.id)
    assert [row["best_case"] for row in owner_rows] == [Decimal("1000")]


async def test_page_draws_snapshot_chart(server, seeded: Seeded) -> None:
    admin = await admin_user()
    period = Period(dt.date(2030, 1, 1), "quarter")
    for offset, weighted in ((2, "100"), (1, "250")):
        await ForecastSnapshot.insert(
            ForecastSnapshot(
                taken_on=today() - dt.timedelta(days=offset),
                period_kind=period.kind,
                period_start=period.start,
                group_kind="total",
                group_id=0,
                closed_won=Decimal("50"),
                commit=Decimal("80"),
                best_case=Decimal("400"),
                weighted=Decimal(weighted),
            )
        )
    session = await signed_in(server, admin)
    try:
        drawn = await session.get(f"/forecast?period={period.key}")
        empty = await session.get("/forecast?period=2030-Q2")
    finally:
        await session.http.aclose()

    assert drawn.status_code == 200
    assert drawn.text.count("<polyline") == 3
    assert 'class="series-forecast"' in drawn.text
    # The top of the scale is the highest forecast: 50 won + 250 weighted.
    assert ">$300<" in drawn.text
    assert empty.status_code == 200
    assert "<polyline" not in empty.text
