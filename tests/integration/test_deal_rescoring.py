"""Deal rescoring in a real arq worker: one job per deal, stored probabilities
and their events, and retraining a win model once enough deals closed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from app.deals.service import create_deal, update_deal
from app.deals.tables import Deal
from app.forecast import queue as deal_queue
from app.forecast import service
from app.forecast.queue import enqueue_deal_rescore, rescore_job_ids
from app.forecast.scores import rescore_deal
from app.forecast.tables import WinModelRecord
from app.merge import Edit
from app.workflows.jobs import close_queue, get_queue
from tests.browserless import Session
from tests.factories import make_team, make_user
from tests.integration.test_deal_probability import PERCENT, seed_varied_history
from tests.integration.test_forecast import add_deal, make_forecast_pipeline
from tests.live_frames import next_event, publishing_from_test_process
from tests.servers import ROOT, stop

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(300)]


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    yield
    await close_queue()


@contextlib.contextmanager
def logged_worker(log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``crm worker`` with its output in ``log``."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            stop(process)


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def edit_deal(deal_id: int, name: str, value: Any) -> None:
    """Change one field of the deal, with its stored value as the edit's base."""
    row = await Deal.select(getattr(Deal, name)).where(Deal.id == deal_id).first()
    assert row is not None
    result = await update_deal(deal_id, {name: Edit(row[name], value)}, None)
    assert name in result.applied


async def queued_job_ids() -> set[str]:
    queue = await get_queue()
    members = await queue.zrange(queue.default_queue_name, 0, -1)
    return {member.decode() for member in members}


async def stored(deal_id: int) -> dict[str, Any]:
    row = (
        await Deal.select(Deal.win_probability, Deal.win_chance, Deal.win_scored_at)
        .where(Deal.id == deal_id)
        .first()
    )
    assert row is not None
    return row


async def test_quick_edits_queue_one_job() -> None:
    pipeline = await make_forecast_pipeline()
    stage = pipeline["stages"]["Proposal"]
    deal_id = await create_deal(
        {"name": "Busy Deal", "pipeline": str(pipeline["id"]), "stage": str(stage)},
        None,
    )
    other_id = await create_deal(
        {"name": "Other Deal", "pipeline": str(pipeline["id"]), "stage": str(stage)},
        None,
    )
    queue = await get_queue()
    first, following = rescore_job_ids(deal_id)

    for amount in ("100", "200", "300", "400"):
        await edit_deal(deal_id, "amount", Decimal(amount))
    again = await enqueue_deal_rescore(deal_id)
    ids = await queued_job_ids()
    mine = {job for job in ids if job.startswith(queue.job_id_prefix + first)}

    assert again is None
    assert mine == {queue.job_id_prefix + first}
    assert queue.job_id_prefix + following not in ids
    assert queue.job_id_prefix + rescore_job_ids(other_id)[0] in ids


async def test_edit_while_running_queues_follow_up() -> None:
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100")
    queue = await get_queue()
    first, following = rescore_job_ids(deal_id)
    queued = await enqueue_deal_rescore(deal_id)
    running = f"arq:in-progress:{queue.job_id_prefix}{first}"
    await queue.set(running, b"1", ex=30)
    try:
        follow_up = await enqueue_deal_rescore(deal_id)
        repeated = await enqueue_deal_rescore(deal_id)
    finally:
        await queue.delete(running)

    assert queued == queue.job_id_prefix + first
    assert follow_up == queue.job_id_prefix + following
    assert repeated is None


async def test_worker_scores_deal_once_after_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wide window, so that a loaded machine still fits the edits in it.
    monkeypatch.setattr(deal_queue, "RESCORE_DELAY", 3.0)
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100")
    log = tmp_path / "worker.log"

    with logged_worker(log):
        for amount in ("150", "250", "350", "450", "550"):
            await edit_deal(deal_id, "amount", Decimal(amount))

        async def scored() -> bool:
            return (await stored(deal_id))["win_scored_at"] is not None

        await wait_for(scored, 60)
        # Leave time for a second job, had one been queued.
        await asyncio.sleep(2)
    runs = log.read_text(encoding="utf-8").count(f"rescore_deal({deal_id})")
    row = await stored(deal_id)
    events = await Deal.raw(
        "SELECT count(*) AS n FROM event WHERE record_type = 'deal' "
        "AND record_id = {} AND kind = 'deal.scored'",
        deal_id,
    )
    chance = row["win_chance"]
    if isinstance(chance, str):
        chance = msgspec.json.decode(chance)

    assert runs == 1
    # No model for this pipeline: the Proposal stage's fixed 40 %.
    assert row["win_probability"] == pytest.approx(0.4)
    assert chance["model_closed_deals"] is None
    assert chance["probability"] == pytest.approx(0.4)
    assert events[0]["n"] == 1


async def test_closing_clears_stored_probability(tmp_path: Path) -> None:
    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100")

    with logged_worker(tmp_path / "worker.log"):
        await edit_deal(deal_id, "amount", Decimal("120"))

        async def scored() -> bool:
            return (await stored(deal_id))["win_probability"] is not None

        await wait_for(scored, 60)
        await edit_deal(deal_id, "stage", pipeline["stages"]["Won"])

        async def cleared() -> bool:
            return (await stored(deal_id))["win_probability"] is None

        await wait_for(cleared, 60)

    assert (await stored(deal_id))["win_chance"] is None


async def trained_at(pipeline_id: int) -> dt.datetime | None:
    row = (
        await WinModelRecord.select(WinModelRecord.trained_at)
        .where(WinModelRecord.pipeline == pipeline_id)
        .first()
    )
    return row["trained_at"] if row else None


async def run_job(name: str) -> Any:
    queue = await get_queue()
    job = await queue.enqueue_job(name)
    assert job is not None
    return await job.result(timeout=240)


async def test_retrain_when_due_waits_for_threshold(tmp_path: Path) -> None:
    pipeline = await make_forecast_pipeline()
    team = await make_team()
    owner = await make_user("sales_rep", team=team)
    other = await make_user("sales_rep", team=team)
    await seed_varied_history(pipeline, owner.id, other.id)
    model = await service.train_pipeline(pipeline["id"], dt.datetime.now(dt.UTC).date())
    assert model is not None
    first_training = await trained_at(pipeline["id"])
    open_ids = [
        row["id"]
        for row in await Deal.raw(
            "SELECT id FROM deal WHERE pipeline = {} AND name LIKE 'Stalled %' "
            "ORDER BY id LIMIT 5",
            pipeline["id"],
        )
    ]
    won = pipeline["stages"]["Won"]

    with logged_worker(tmp_path / "worker.log", {"CRM_FORECAST_RETRAIN_AFTER": "5"}):
        for deal_id in open_ids[:4]:
            await edit_deal(deal_id, "stage", won)
        await run_job("retrain_win_models_when_due")
        below = await trained_at(pipeline["id"])

        await edit_deal(open_ids[4], "stage", won)
        await run_job("retrain_win_models_when_due")
        passed = await trained_at(pipeline["id"])

        await run_job("retrain_win_models_when_due")
        after = await trained_at(pipeline["id"])

    assert len(open_ids) == 5
    assert first_training is not None
    assert below == first_training
    assert passed is not None
    assert passed > first_training
    # The count starts again from the new model.
    assert after == passed


async def test_deal_jobs_registered_in_worker() -> None:
    from workers.settings import WorkerSettings

    names = {
        getattr(function, "name", getattr(function, "__name__", ""))
        for function in WorkerSettings.functions
    }
    crons = {job.name for job in WorkerSettings.cron_jobs}

    assert deal_queue.RESCORE_DEAL_FUNCTION in names
    assert "retrain_win_models_when_due" in names
    assert any(name.endswith("cron:retrain_win_models") for name in crons)


async def test_scored_value_reaches_open_page(server, tmp_path: Path) -> None:
    pipeline = await make_forecast_pipeline()
    team = await make_team()
    owner = await make_user("sales_rep", team=team)
    other = await make_user("sales_rep", team=team)
    await seed_varied_history(pipeline, owner.id, other.id)
    today = dt.datetime.now(dt.UTC).date()
    assert await service.train_pipeline(pipeline["id"], today) is not None
    deal_id = await add_deal(
        pipeline,
        "Negotiation",
        "40000",
        owner=owner.id,
        team=team,
        engage_date=today - dt.timedelta(days=40),
    )
    await rescore_deal(deal_id)
    before = (await stored(deal_id))["win_probability"]
    viewer = Session(server.url)
    await viewer.sign_in((await make_user("sales_manager")).email)
    socket = await viewer.live(f"topic=deal:{deal_id}")
    forecast = await viewer.live(f"topic=pipeline:{pipeline['id']}&view=forecast")
    frames = []
    refreshes = []
    try:
        # The stage move is published at once, as a web process would, so it
        # reaches the pages before the worker's rescoring.
        with logged_worker(tmp_path / "worker.log"):
            async with publishing_from_test_process():
                await edit_deal(deal_id, "stage", pipeline["stages"]["Proposal"])

            async def scored() -> bool:
                return (await stored(deal_id))["win_probability"] != before

            await wait_for(scored, 60)
            shown = str(round(100 * (await stored(deal_id))["win_probability"]))
            # The stage move's own frame may carry the earlier figure; the
            # rescoring's frame follows it.
            async with asyncio.timeout(30):
                while not frames or PERCENT.findall(frames[-1]) != [shown]:
                    frames.append(await next_event(socket, 30))
            # Forecast pages refetch their totals after the stage move and
            # again after the rescoring.
            async with asyncio.timeout(30):
                while len(refreshes) < 2:
                    frame = await next_event(forecast, 30)
                    if frame.startswith("#seq ") and "forecast-refresh" in frame:
                        refreshes.append(frame)
    finally:
        await forecast.close()
        await socket.close()
        await viewer.close()
    after = (await stored(deal_id))["win_probability"]

    assert after != before
    assert PERCENT.findall(frames[-1]) == [str(round(100 * after))]
    assert f'id="deal-{deal_id}-chance" hx-swap-oob="true"' in frames[-1]
    assert len(refreshes) == 2


async def test_comment_queues_rescoring() -> None:
    from app.comments.service import add_comment

    pipeline = await make_forecast_pipeline()
    deal_id = await add_deal(pipeline, "Proposal", "100")
    queue = await get_queue()

    await add_comment("deal", deal_id, "Spoke to the buyer today", None)
    ids = await queued_job_ids()

    assert queue.job_id_prefix + rescore_job_ids(deal_id)[0] in ids
