"""Lead scoring: training in a real arq worker, rescoring, and rule decay."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from app.leads.service import create_lead, record_activity, update_lead
from app.leads.tables import Lead, LeadActivity
from app.merge import Edit
from app.scoring.admin import add_rule
from app.scoring.queue import RESCORE_FUNCTION, enqueue_rescore, rescore_job_ids
from app.scoring.service import rescore_lead
from app.scoring.tables import ScoringModel, ScoringRule
from app.workflows.jobs import close_queue, get_queue
from tests.conftest import datasets_dir
from tests.servers import worker_process

pytestmark = pytest.mark.timeout(300)


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    yield
    await close_queue()


@pytest_asyncio.fixture(loop_scope="session")
async def no_rules() -> AsyncIterator[None]:
    """Run a test with only the rules it adds, and remove them afterwards."""
    await ScoringRule.delete(force=True)
    yield
    await ScoringRule.delete(force=True)


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return time.monotonic() - started


async def queued_job_ids() -> set[str]:
    queue = await get_queue()
    members = await queue.zrange(queue.default_queue_name, 0, -1)
    return {member.decode() for member in members}


async def test_rescoring_queues_one_job_per_lead() -> None:
    lead_id = await create_lead({"name": "Queued Once"}, None)
    queue = await get_queue()
    first, following = rescore_job_ids(lead_id)

    # create_lead queued the first job already; no worker runs here.
    again = await enqueue_rescore(lead_id)
    await update_lead(lead_id, {"company": Edit("", "Busy Ltd")}, None)
    ids = await queued_job_ids()

    assert again is None
    assert queue.job_id_prefix + first in ids
    assert queue.job_id_prefix + following not in ids


async def test_rescoring_while_running_queues_a_follow_up() -> None:
    lead_id = await create_lead({"name": "Running Now"}, None)
    queue = await get_queue()
    first, following = rescore_job_ids(lead_id)
    running = f"arq:in-progress:{queue.job_id_prefix}{first}"
    await queue.set(running, b"1", ex=30)
    try:
        follow_up = await enqueue_rescore(lead_id)
        repeated = await enqueue_rescore(lead_id)
    finally:
        await queue.delete(running)

    assert follow_up == queue.job_id_prefix + following
    assert repeated is None


async def test_rules_decay_with_half_life(no_rules: None) -> None:
    now = dt.datetime.now(dt.UTC)
    lead_id = await create_lead({"name": "Decaying", "source": "Reference"}, None)
    await Lead.update({Lead.created_at: now - dt.timedelta(days=10)}).where(
        Lead.id == lead_id
    )
    await add_rule(
        {
            "kind": "field",
            "field": "source",
            "value": "reference",
            "points": "40",
            "half_life_days": "10",
        },
        None,
    )
    await add_rule(
        {"kind": "field", "field": "company", "value": "", "points": "30"}, None
    )
    await add_rule(
        {"kind": "activity", "field": "call", "points": "16", "half_life_days": "1"},
        None,
    )
    await record_activity(lead_id, "call", "First call", None)
    await LeadActivity.update(
        {LeadActivity.occurred_at: now - dt.timedelta(days=2)}
    ).where(LeadActivity.lead == lead_id)
    await record_activity(lead_id, "call", "Second call", None)

    score = await rescore_lead(lead_id, now=now)
    later = await rescore_lead(lead_id, now=now + dt.timedelta(days=10))
    stored = await Lead.select().where(Lead.id == lead_id).first()

    assert score is not None
    # 40 halved once, plus 16 halved twice and one fresh call of 16.
    assert score.rule_score == 20 + 4 + 16
    assert later is not None
    assert later.rule_score == round(10 + 16 * 0.5**12 + 16 * 0.5**10)
    assert stored is not None
    assert stored["rule_score"] == later.rule_score
    assert [factor["text"] for factor in score.factors] == [
        "source is reference",
        "2 call activities",
    ]
    assert [factor["points"] for factor in score.factors] == [20, 20]


async def test_rescore_event_only_when_score_changes(no_rules: None) -> None:
    lead_id = await create_lead({"name": "Steady"}, None)
    await rescore_lead(lead_id)
    rows = await Lead.raw(
        "SELECT count(*) AS n FROM event WHERE record_type = 'lead' "
        "AND record_id = {} AND kind = 'lead.scored'",
        lead_id,
    )

    await rescore_lead(lead_id)
    again = await Lead.raw(
        "SELECT count(*) AS n FROM event WHERE record_type = 'lead' "
        "AND record_id = {} AND kind = 'lead.scored'",
        lead_id,
    )

    assert rows[0]["n"] == 1
    assert again[0]["n"] == 1


async def latest_model_version() -> int:
    row = (
        await ScoringModel.select(ScoringModel.version)
        .order_by(ScoringModel.version, ascending=False)
        .first()
    )
    return row["version"] if row else 0


async def test_worker_trains_model_and_rescores(tmp_path: Path) -> None:
    from app.imports.service import run_import

    source = datasets_dir("leads", "Leads.csv")
    lines = source.read_text(encoding="utf-8").splitlines()
    sliced = tmp_path / "Leads.csv"
    sliced.write_text("\n".join(lines[:2001]) + "\n", encoding="utf-8")
    await run_import("leads", [sliced])
    before = await latest_model_version()
    queue = await get_queue()

    with worker_process():
        await queue.enqueue_job("train_scoring_model")

        async def trained() -> bool:
            return await latest_model_version() > before

        await wait_for(trained, 120)
        lead_id = await create_lead(
            {"name": "Fresh Arrival", "source": "Reference"},
            None,
            answers={"Lead Origin": "Lead Add Form", "TotalVisits": "3"},
        )

        async def scored() -> bool:
            row = await Lead.select(Lead.model_score).where(Lead.id == lead_id).first()
            return row is not None and row["model_score"] is not None

        await wait_for(scored, 30)

    # The retraining cron may add a newer model while the test runs, so
    # check the model that actually scored the lead.
    lead = await Lead.select().where(Lead.id == lead_id).first()
    assert lead is not None
    assert lead["model_version"] > before
    model = (
        await ScoringModel.select()
        .where(ScoringModel.version == lead["model_version"])
        .first()
    )
    assert model is not None
    metrics = model["metrics"]
    if isinstance(metrics, str):
        metrics = msgspec.json.decode(metrics)
    assert model["outcomes"] >= 2000
    assert metrics["roc_auc"] > 0.8
    assert 0 <= lead["score"] <= 100
    factors = lead["score_factors"]
    if isinstance(factors, str):
        factors = msgspec.json.decode(factors)
    model_factors = [factor for factor in factors if factor["part"] == "model"]
    assert model_factors
    assert all(factor["points"] != 0 for factor in model_factors)


async def test_workflow_rescore_job_rescores_lead() -> None:
    lead_id = await create_lead({"name": "Rule Target"}, None)
    await Lead.update({Lead.score: None, Lead.scored_at: None}).where(
        Lead.id == lead_id
    )
    queue = await get_queue()
    # Leave the lead's own job aside: only the workflow job may rescore it.
    first, _ = rescore_job_ids(lead_id)
    await queue.delete(f"arq:job:{queue.job_id_prefix}{first}")
    await queue.zrem(queue.default_queue_name, queue.job_id_prefix + first)

    with worker_process():
        await queue.enqueue_job("rescore", "lead", lead_id)

        async def scored() -> bool:
            row = await Lead.select(Lead.scored_at).where(Lead.id == lead_id).first()
            return row is not None and row["scored_at"] is not None

        await wait_for(scored, 30)


def test_rescore_function_name_matches_worker() -> None:
    from workers.settings import WorkerSettings

    names = {
        getattr(function, "name", getattr(function, "__name__", ""))
        for function in WorkerSettings.functions
    }

    assert RESCORE_FUNCTION in names
    assert "train_scoring_model" in names
    assert "rescore_open_leads" in names
