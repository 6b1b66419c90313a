"""The nightly rescoring of open leads, in a real arq worker."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.leads.service import create_lead
from app.leads.tables import CLOSED_STATUSES, Lead
from app.scoring.admin import add_rule
from app.scoring.queue import rescore_job_ids
from app.scoring.service import rescore_lead
from app.scoring.tables import ScoringRule
from app.workflows.jobs import close_queue, get_queue
from tests.servers import worker_process
from workers import scoring

pytestmark = pytest.mark.timeout(180)


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    yield
    await close_queue()


@pytest_asyncio.fixture(loop_scope="session")
async def decaying_rule() -> AsyncIterator[None]:
    """Leave one rule: 40 points for source Reference, halved every 10 days."""
    await ScoringRule.delete(force=True)
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
    yield
    await ScoringRule.delete(force=True)


async def aged_lead(name: str, days: int) -> int:
    """Create a lead scored today, then move its creation ``days`` back.

    The rescoring job that creating the lead queued is removed, so only the
    job under test rescores it.
    """
    lead_id = await create_lead({"name": name, "source": "Reference"}, None)
    queue = await get_queue()
    for job_id in rescore_job_ids(lead_id):
        await queue.delete(f"arq:job:{queue.job_id_prefix}{job_id}")
        await queue.zrem(queue.default_queue_name, queue.job_id_prefix + job_id)
    await rescore_lead(lead_id)
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    await Lead.update({Lead.created_at: created}).where(Lead.id == lead_id)
    return lead_id


async def rule_score(lead_id: int) -> int:
    row = await Lead.select(Lead.rule_score).where(Lead.id == lead_id).first()
    assert row is not None
    return int(row["rule_score"])


async def test_nightly_rescoring_decays_stored_scores(decaying_rule: None) -> None:
    lead_id = await aged_lead("Gone Quiet", 20)
    closed_id = await aged_lead("Already Closed", 20)
    await Lead.update({Lead.status: "unqualified"}).where(Lead.id == closed_id)
    before = await rule_score(lead_id)
    closed_before = await rule_score(closed_id)
    queue = await get_queue()

    with worker_process():
        job = await queue.enqueue_job("rescore_open_leads_nightly")
        assert job is not None
        rescored = await job.result(timeout=120)

    assert before == 40
    # Two half-lives of ten days: 40 points become 10.
    assert await rule_score(lead_id) == 10
    # A closed lead keeps the score it had.
    assert await rule_score(closed_id) == closed_before
    assert rescored >= 1


async def test_nightly_rescoring_reads_in_batches(
    decaying_rule: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await aged_lead("Batch One", 10)
    second = await aged_lead("Batch Two", 10)
    third = await aged_lead("Batch Three", 10)
    open_count = await Lead.count().where(Lead.status.not_in(list(CLOSED_STATUSES)))
    monkeypatch.setattr(scoring, "RESCORE_BATCH", 2)

    with caplog.at_level(logging.INFO, logger="workers.scoring"):
        count = await scoring.rescore_open_leads_nightly({"job_id": "test-nightly"})
    progress = [
        record.getMessage()
        for record in caplog.records
        if "rescoring progress" in record.getMessage()
    ]

    assert count == open_count
    assert len(progress) == open_count // 2 + 1
    assert f"rescored={open_count}" in progress[-1]
    for lead_id in (first, second, third):
        assert await rule_score(lead_id) == 20


def test_nightly_rescoring_is_scheduled() -> None:
    from workers.settings import WorkerSettings

    names = {job.name for job in WorkerSettings.cron_jobs}

    assert any(name.endswith("cron:rescore_open_leads_nightly") for name in names)
