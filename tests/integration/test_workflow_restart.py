"""A time-based rule across worker restarts, with the workers' clocks moved.

Each worker is a real ``crm worker`` process. ``CRM_CLOCK_START``
(app.time_travel) starts a worker at a set wall-clock time, so a timer due
ten minutes from now can come due without the test waiting ten minutes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from app.tickets.service import create_ticket
from app.workflows.planning import get_plan, run_plan
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from tests.conftest import REDIS_URL
from tests.servers import worker_process

pytestmark = pytest.mark.timeout(180)

DELAY_MINUTES = 10
# A worker fires due timers at start and every five seconds after.
FIRE_WITHIN = dt.timedelta(seconds=60)


def clock_env(offset: dt.timedelta) -> dict[str, str]:
    """Return the environment of a worker whose clock runs ``offset`` ahead."""
    start = dt.datetime.now(dt.UTC) + offset
    return {"CRM_CLOCK_START": start.isoformat()}


@pytest.fixture
def marker() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


async def stale_rule(marker: str) -> int:
    """Enable "tag a ticket ten minutes after it was created"."""
    rule_id = await save_rule(
        None,
        "ticket",
        f"Stale {marker}",
        {
            "trigger": {
                "kind": "time_after",
                "after": "created_at",
                "delay_minutes": DELAY_MINUTES,
            },
            "conditions": {
                "type": "group",
                "items": [
                    {
                        "type": "condition",
                        "field": "subject",
                        "op": "contains",
                        "value": marker,
                    }
                ],
            },
            "actions": [{"kind": "add_tag", "tag": "stale"}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    # Plan the existing tickets here, so the workers below only tick.
    plan = await get_plan(rule_id)
    assert plan is not None
    await run_plan(rule_id, plan["generation"])
    return rule_id


async def timer_of(rule_id: int) -> dict[str, Any]:
    rows = await WorkflowTimer.select().where(WorkflowTimer.rule == rule_id)
    assert len(rows) == 1, rows
    return rows[0]


async def timer_ticks() -> set[str]:
    """Return the runs of the timer cron whose results arq still keeps.

    arq names each run of a unique cron job after its time, and keeps the
    result for a minute (workers.settings).
    """
    prefix = os.environ["REDIS_PREFIX"]
    redis = Redis.from_url(REDIS_URL)
    try:
        pattern = f"arq:result:{prefix}cron:workflow_timers:*"
        return {key async for key in redis.scan_iter(match=pattern, count=1000)}
    finally:
        await redis.aclose()


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the workers signal nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.25)


async def wait_for_ticks(count: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until the timer cron has run ``count`` more times."""
    seen = await timer_ticks()

    async def ticked() -> bool:
        assert process.poll() is None, "the worker exited"
        return len(await timer_ticks() - seen) >= count

    await wait_for(ticked, seconds=60)


async def tags_of(ticket_id: int) -> list[str]:
    rows = await RuleRun.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    return list(rows[0]["tags"])


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"]
)
async def test_timer_fires_once_after_restart_past_due(
    marker: str, stop_signal: signal.Signals
) -> None:
    rule_id = await stale_rule(marker)
    try:
        ticket_id = await create_ticket({"subject": f"Quiet {marker}"}, None)
        timer = await timer_of(rule_id)
        due_at = timer["due_at"]
        assert timer["fired_at"] is None
        assert due_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=9)

        # Worker A runs on the real clock, before the timer is due, and stops.
        with worker_process() as worker_a:
            await wait_for_ticks(2, worker_a)
            worker_a.send_signal(stop_signal)
            worker_a.wait(timeout=15)
        assert await RuleRun.count().where(RuleRun.rule == rule_id) == 0
        assert (await timer_of(rule_id))["fired_at"] is None

        # Worker B starts five seconds after the due time.
        offset = due_at - dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)

        async def fired() -> bool:
            return await RuleRun.exists().where(RuleRun.rule == rule_id)

        with worker_process(clock_env(offset)) as worker_b:
            await wait_for(fired, seconds=60)
            # Later ticks of B must find nothing more to fire.
            await wait_for_ticks(2, worker_b)

        runs = await RuleRun.select().where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done"]
        assert [run["record_id"] for run in runs] == [ticket_id]
        fired_at = (await timer_of(rule_id))["fired_at"]
        assert fired_at is not None
        assert fired_at >= due_at
        assert fired_at - due_at < FIRE_WITHIN
        assert await tags_of(ticket_id) == ["stale"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_two_workers_around_due_time_fire_once(marker: str) -> None:
    rule_id = await stale_rule(marker)
    try:
        ticket_id = await create_ticket({"subject": f"Quiet {marker}"}, None)
        due_at = (await timer_of(rule_id))["due_at"]

        async def fired() -> bool:
            return await RuleRun.exists().where(RuleRun.rule == rule_id)

        # Both workers' clocks start 20 seconds before the due time, so
        # both are normally running and ticking when it passes.
        def before_due() -> dict[str, str]:
            lead = dt.timedelta(seconds=20)
            return clock_env(due_at - dt.datetime.now(dt.UTC) - lead)

        with worker_process(before_due()) as first, worker_process(before_due()):
            started = time.monotonic()
            await wait_for(fired, seconds=60)
            print(f"fired {time.monotonic() - started:.1f} s after both started")
            await wait_for_ticks(3, first)

        runs = await RuleRun.select().where(RuleRun.rule == rule_id)
        assert [run["outcome"] for run in runs] == ["done"]
        fired_at = (await timer_of(rule_id))["fired_at"]
        assert fired_at is not None
        assert fired_at >= due_at
        assert fired_at - due_at < FIRE_WITHIN
        assert await tags_of(ticket_id) == ["stale"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
