"""Scheduled rules and time-based triggers counted in business hours.

The worker test waits for a real arq worker's cron to fire an hourly rule
in its minute. The others move this process's workflow clock
(``app.workflows.clock.shift``) and fire due timers here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from app.deals.service import update_deal
from app.errors import FieldError
from app.merge import Edit
from app.sla.calendars import parse_holidays_text, parse_hours_text
from app.sla.policies import CalendarInput, save_calendar
from app.tickets.service import create_ticket
from app.workflows import clock, planning, timers
from app.workflows.planning import get_plan, run_plan
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from app.workflows.timers import fire_due_timers
from tests.factories import contains, make_deal, make_pipeline, unique
from tests.servers import worker_process

pytestmark = pytest.mark.timeout(180)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = "\n".join(
    f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")
)
# Ten business hours: all of Friday's eight, then two on the next open day.
DELAY_MINUTES = 600


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def real_clock() -> AsyncIterator[None]:
    yield
    clock.reset()


async def timers_of(rule_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await WorkflowTimer.select()
        .where(WorkflowTimer.rule == rule_id)
        .order_by(WorkflowTimer.id)
    )
    return rows


async def tags_of(table: str, record_id: int) -> list[str]:
    rows = await RuleRun.raw(f"SELECT tags FROM {table} WHERE id = {{}}", record_id)
    return list(rows[0]["tags"] or [])


async def scheduled_ticket_rule(marker: str, schedule: dict[str, int | str]) -> int:
    rule_id = await save_rule(
        None,
        "ticket",
        f"Sweep {marker}",
        {
            "trigger": {"kind": "scheduled", "schedule": schedule},
            "conditions": contains("subject", marker),
            "actions": [{"kind": "add_tag", "tag": "swept"}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    return rule_id


async def oldest_ticket(marker: str) -> int:
    """Create a ticket, last updated long ago, for a scheduled run to find."""
    ticket_id = await create_ticket({"subject": f"Stale {marker}"}, None)
    await RuleRun.raw(
        "UPDATE ticket SET updated_at = '2000-01-01T00:00:00Z' WHERE id = {}",
        ticket_id,
    )
    return ticket_id


async def test_worker_fires_hourly_rule_in_its_minute() -> None:
    marker = uuid.uuid4().hex[:10]
    ticket_id = await oldest_ticket(marker)
    next_minute = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).minute
    rule_id = await scheduled_ticket_rule(
        marker, {"every": "hourly", "minute": next_minute}
    )
    try:
        [timer] = await timers_of(rule_id)
        due = timer["due_at"]
        assert due.minute == next_minute
        assert due.second == 0
        assert timer["record_id"] == 0

        ran = RuleRun.exists().where(
            (RuleRun.rule == rule_id)
            & (RuleRun.record_id == ticket_id)
            & (RuleRun.outcome == "done")
        )
        with worker_process():
            async with asyncio.timeout(120):
                # Polling is the point: the worker signals nothing to wait on.
                while not await ran:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)

        fired, pending = await timers_of(rule_id)
        assert fired["fired_at"] is not None
        assert due <= fired["fired_at"] < due + dt.timedelta(minutes=1)
        run = (
            await RuleRun.select(RuleRun.created_at)
            .where((RuleRun.rule == rule_id) & (RuleRun.record_id == ticket_id))
            .first()
        )
        assert due <= run["created_at"] < due + dt.timedelta(minutes=1)
        assert pending["fired_at"] is None
        assert pending["due_at"] == due + dt.timedelta(hours=1)
        assert await tags_of("ticket", ticket_id) == ["swept"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_weekly_rule_fires_at_its_time_once() -> None:
    marker = uuid.uuid4().hex[:10]
    ticket_id = await oldest_ticket(marker)
    weekday = (dt.datetime.now(dt.UTC).weekday() + 2) % 7
    rule_id = await scheduled_ticket_rule(
        marker, {"every": "weekly", "weekday": weekday, "hour": 6, "minute": 30}
    )
    try:
        [timer] = await timers_of(rule_id)
        due = timer["due_at"]
        assert due.weekday() == weekday
        assert (due.hour, due.minute) == (6, 30)
        assert dt.timedelta(days=1) < due - dt.datetime.now(dt.UTC)
        assert due - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)

        clock.shift(due - clock.now() - dt.timedelta(seconds=30))
        await fire_due_timers()
        assert (await timers_of(rule_id))[0]["fired_at"] is None
        assert await tags_of("ticket", ticket_id) == []

        clock.shift(dt.timedelta(seconds=60))
        await fire_due_timers()
        await fire_due_timers()
        fired, pending = await timers_of(rule_id)
        assert fired["fired_at"] is not None
        assert pending["fired_at"] is None
        assert pending["due_at"] == due + dt.timedelta(days=7)
        assert await tags_of("ticket", ticket_id) == ["swept"]
        runs = await RuleRun.count().where(
            (RuleRun.rule == rule_id) & (RuleRun.record_id == ticket_id)
        )
        assert runs == 1
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


def friday_in_a_week() -> dt.date:
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)
    return day + dt.timedelta(days=(4 - day.weekday()) % 7)


async def closing_rule(marker: str, holidays: str) -> int:
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Office"),
            time_zone="Europe/Berlin",
            hours=parse_hours_text(WEEKDAYS_9_TO_5),
            holidays=parse_holidays_text(holidays),
        ),
        None,
    )
    rule_id = await save_rule(
        None,
        "deal",
        f"Closing {marker}",
        {
            "trigger": {
                "kind": "time_after",
                "after": "close_date",
                "delay_minutes": DELAY_MINUTES,
                "calendar_id": calendar_id,
            },
            "conditions": contains("name", marker),
            "actions": [{"kind": "add_tag", "tag": "closing"}],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    return rule_id


@pytest.mark.parametrize("monday_holiday", [False, True])
async def test_business_hours_timer_skips_weekend(monday_holiday: bool) -> None:
    friday = friday_in_a_week()
    monday = friday + dt.timedelta(days=3)
    marker = uuid.uuid4().hex[:10]
    rule_id = await closing_rule(marker, monday.isoformat() if monday_holiday else "")
    # Friday 09:00 to 17:00, then 09:00 to 11:00 on the next working day.
    next_working_day = monday + dt.timedelta(days=1 if monday_holiday else 0)
    expected = dt.datetime.combine(next_working_day, dt.time(11, 0), tzinfo=BERLIN)
    try:
        pipeline = await make_pipeline()
        deal_id = await make_deal(pipeline, name=f"Renewal {marker}")
        await update_deal(deal_id, {"close_date": Edit(base=None, new=friday)}, None)

        [timer] = await timers_of(rule_id)
        assert timer["record_id"] == deal_id
        assert timer["due_at"] == expected

        clock.shift(expected - clock.now() - dt.timedelta(minutes=1))
        await fire_due_timers()
        assert (await timers_of(rule_id))[0]["fired_at"] is None
        assert await tags_of("deal", deal_id) == []

        clock.shift(dt.timedelta(minutes=2))
        await fire_due_timers()
        [fired] = await timers_of(rule_id)
        assert fired["fired_at"] is not None
        assert await tags_of("deal", deal_id) == ["closing"]
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_moved_date_moves_business_timer() -> None:
    friday = friday_in_a_week()
    marker = uuid.uuid4().hex[:10]
    rule_id = await closing_rule(marker, "")
    try:
        pipeline = await make_pipeline()
        deal_id = await make_deal(pipeline, name=f"Upsell {marker}")
        await update_deal(deal_id, {"close_date": Edit(base=None, new=friday)}, None)
        later = friday + dt.timedelta(days=7)
        await update_deal(deal_id, {"close_date": Edit(base=friday, new=later)}, None)

        timers = await timers_of(rule_id)
        monday = later + dt.timedelta(days=3)
        assert len(timers) == 1
        assert timers[0]["due_at"] == dt.datetime.combine(
            monday, dt.time(11, 0), tzinfo=BERLIN
        )
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_scheduled_rule_runs_over_all_records_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timers, "SCHEDULE_BATCH", 3)
    marker = uuid.uuid4().hex[:10]
    ticket_ids = [
        await create_ticket({"subject": f"Batch {marker} {number}"}, None)
        for number in range(7)
    ]
    weekday = (dt.datetime.now(dt.UTC).weekday() + 2) % 7
    rule_id = await scheduled_ticket_rule(
        marker, {"every": "weekly", "weekday": weekday, "hour": 6, "minute": 30}
    )
    try:
        [timer] = await timers_of(rule_id)
        clock.shift(timer["due_at"] - clock.now() + dt.timedelta(seconds=30))

        await fire_due_timers(limit=100_000)

        for ticket_id in ticket_ids:
            assert await tags_of("ticket", ticket_id) == ["swept"]
        fired, pending = await timers_of(rule_id)
        assert fired["fired_at"] is not None
        assert fired["done_through"] >= ticket_ids[-1] - 3
        assert pending["fired_at"] is None
        assert pending["done_through"] == 0
        assert pending["due_at"] == timer["due_at"] + dt.timedelta(days=7)
        runs = await RuleRun.select(RuleRun.record_id, RuleRun.created_at).where(
            (RuleRun.rule == rule_id) & RuleRun.record_id.is_in(ticket_ids)
        )
        assert sorted(run["record_id"] for run in runs) == ticket_ids
        # One transaction per batch, and now() differs between transactions.
        assert len({run["created_at"] for run in runs}) >= 3
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


def stale_ticket_rule(marker: str, delay_minutes: int) -> dict[str, Any]:
    return {
        "trigger": {
            "kind": "time_after",
            "after": "created_at",
            "delay_minutes": delay_minutes,
        },
        "conditions": {
            "type": "group",
            "match": "all",
            "items": [
                {
                    "type": "condition",
                    "field": "subject",
                    "op": "contains",
                    "value": marker,
                },
                {
                    "type": "condition",
                    "field": "priority",
                    "op": "equals",
                    "value": "high",
                },
            ],
        },
        "actions": [{"kind": "add_tag", "tag": "stale"}],
    }


async def plan_now(rule_id: int) -> None:
    """Run the rule's queued timer planning here, as the worker job would."""
    plan = await get_plan(rule_id)
    assert plan is not None
    result = await run_plan(rule_id, plan["generation"])
    assert result["state"] == "done"


async def test_enabling_time_rule_sets_timers_for_existing_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planning, "PLAN_BATCH", 2)
    marker = uuid.uuid4().hex[:10]
    matching = [
        await create_ticket({"subject": f"Old {marker}", "priority": "high"}, None)
        for _ in range(3)
    ]
    other = await create_ticket({"subject": f"Old {marker}", "priority": "low"}, None)
    rule_id = await save_rule(
        None, "ticket", f"Stale {marker}", stale_ticket_rule(marker, 60), None
    )
    try:
        assert await timers_of(rule_id) == []

        await set_enabled(rule_id, True, None)
        await plan_now(rule_id)
        first = {timer["record_id"]: timer for timer in await timers_of(rule_id)}
        await save_rule(
            rule_id, "ticket", f"Stale {marker}", stale_ticket_rule(marker, 120), None
        )
        await plan_now(rule_id)
        second = {timer["record_id"]: timer for timer in await timers_of(rule_id)}
        await set_enabled(rule_id, False, None)
        left_when_disabled = await timers_of(rule_id)
        await set_enabled(rule_id, True, None)
        await plan_now(rule_id)
        clock.shift(dt.timedelta(minutes=121))
        await fire_due_timers(limit=100_000)

        assert sorted(first) == matching
        assert sorted(second) == matching
        for ticket_id in matching:
            moved = second[ticket_id]["due_at"] - first[ticket_id]["due_at"]
            assert moved == dt.timedelta(minutes=60)
            assert await tags_of("ticket", ticket_id) == ["stale"]
        assert await tags_of("ticket", other) == []
        assert left_when_disabled == []
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_time_rule_rejects_unknown_calendar() -> None:
    definition = stale_ticket_rule("x", 60)
    definition["trigger"]["calendar_id"] = 2_000_000_000

    with pytest.raises(FieldError) as raised:
        await save_rule(None, "ticket", "No calendar", definition, None)

    assert raised.value.field == "trigger.calendar_id"
    assert raised.value.value == 2_000_000_000
