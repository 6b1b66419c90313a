"""SLA clocks under controlled time, and SLA rules fired by a real worker.

The pause test moves this process's wall clock with time-machine, so the
ticket service, the SLA tracking and the check read the same moments. The
worker test starts a real ``crm worker`` whose clock runs three hours
ahead (``CRM_CLOCK_START``), so a ticket created now is overdue there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from redis.asyncio import Redis

from app.comments.service import add_comment
from app.sla.breaches import detect_breaches
from app.sla.calendars import parse_holidays_text, parse_hours_text
from app.sla.policies import CalendarInput, PolicyInput, save_calendar, save_policy
from app.sla.tables import SlaClock
from app.tickets.service import create_ticket, set_ticket_field
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule
from tests.conftest import REDIS_URL
from tests.factories import make_team, make_user, unique
from tests.servers import worker_process

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = "\n".join(
    f"{day} 09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")
)
ALWAYS_OPEN = "\n".join(
    f"{day} 00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


@pytest.fixture
def travel() -> Iterator[Any]:
    """Return a function that moves the wall clock of this process."""
    travellers: list[Any] = []

    def move_to(moment: dt.datetime) -> None:
        if travellers:
            travellers.pop().stop()
        traveller = time_machine.travel(moment, tick=False)
        traveller.start()
        travellers.append(traveller)

    yield move_to
    for traveller in travellers:
        traveller.stop()


async def clocks(ticket_id: int) -> dict[str, dict[str, Any]]:
    rows = await SlaClock.raw(
        "SELECT * FROM sla_clock WHERE ticket = {} ORDER BY id", ticket_id
    )
    return {row["metric"]: dict(row) for row in rows}


@pytest.mark.timeout(60)
async def test_pause_over_weekend_and_holiday(travel: Any) -> None:
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Office"),
            time_zone="Europe/Berlin",
            hours=parse_hours_text(WEEKDAYS_9_TO_5),
            # Monday 8 March 2027 is a holiday.
            holidays=parse_holidays_text("2027-03-08"),
        ),
        None,
    )
    team = await make_team()
    agent = await make_user("support_agent", team=team)
    await save_policy(
        None,
        PolicyInput(
            name=unique("Policy"),
            calendar_id=calendar_id,
            team_id=team,
            targets={
                "high": {"first_response": 60, "next_response": 120, "resolution": 480}
            },
        ),
        None,
    )

    # Thursday 10:00: resolution is due after eight business hours.
    travel(berlin(2027, 3, 4, 10, 0))
    ticket_id = await create_ticket(
        {"subject": unique("Invoice"), "priority": "high", "team": str(team)}, None
    )
    found = await clocks(ticket_id)
    assert found["first_response"]["due_at"] == berlin(2027, 3, 4, 11, 0)
    assert found["resolution"]["due_at"] == berlin(2027, 3, 5, 10, 0)

    # An agent asks the customer a question at 10:30 and waits on the answer
    # from 15:00, three business hours before the resolution is due.
    travel(berlin(2027, 3, 4, 10, 30))
    await add_comment("ticket", ticket_id, "Which invoice number?", agent.id)
    travel(berlin(2027, 3, 4, 15, 0))
    await set_ticket_field(ticket_id, "status", "pending", "new", None)

    # Nothing breaches while the ticket waits, even far past the old due time.
    # The check covers every ticket, so only this one's clocks are read.
    for moment in (berlin(2027, 3, 5, 12, 0), berlin(2027, 3, 8, 12, 0)):
        travel(moment)
        await detect_breaches()
        waiting = await clocks(ticket_id)
        assert waiting["resolution"]["breached_at"] is None
        assert waiting["resolution"]["warned_at"] is None

    # The customer replies on Tuesday 11:00. Pending took Thursday 15-17,
    # Friday 9-17 and Tuesday 9-11, twelve business hours, so the due time
    # moves from Friday 10:00 to Tuesday 14:00.
    travel(berlin(2027, 3, 9, 11, 0))
    await set_ticket_field(ticket_id, "status", "open", "pending", None)
    found = await clocks(ticket_id)

    assert found["resolution"]["due_at"] == berlin(2027, 3, 9, 14, 0)
    paused = await SlaClock.raw(
        "SELECT paused_seconds, paused_at FROM ticket_sla WHERE ticket = {}", ticket_id
    )
    assert paused[0]["paused_seconds"] == 12 * 3600
    assert paused[0]["paused_at"] is None
    assert found["first_response"]["stopped_at"] == berlin(2027, 3, 4, 10, 30)
    assert found["first_response"]["met"] is True
    # Leaving pending for open starts the next-response clock.
    assert found["next_response"]["due_at"] == berlin(2027, 3, 9, 13, 0)

    travel(berlin(2027, 3, 9, 13, 59, 59))
    await detect_breaches()
    assert (await clocks(ticket_id))["resolution"]["breached_at"] is None

    travel(berlin(2027, 3, 9, 14, 0))
    await detect_breaches()
    resolution = (await clocks(ticket_id))["resolution"]
    assert resolution["breached_at"] == berlin(2027, 3, 9, 14, 0)


async def sla_check_runs() -> set[str]:
    """Return the runs of the SLA cron whose results arq still keeps."""
    redis = Redis.from_url(REDIS_URL)
    try:
        pattern = f"arq:result:{os.environ['REDIS_PREFIX']}cron:check_sla_clocks:*"
        return {key async for key in redis.scan_iter(match=pattern, count=1000)}
    finally:
        await redis.aclose()


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the worker signals nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.5)


def subject_and(marker: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "group",
        "items": [
            {
                "type": "condition",
                "field": "subject",
                "op": "contains",
                "value": marker,
            },
            *items,
        ],
    }


async def notifications(rule_id: int) -> list[dict[str, Any]]:
    rows = await RuleRun.raw(
        "SELECT changes::text AS changes, topics FROM event "
        "WHERE kind = 'workflow.notified' AND record_id = {} ORDER BY id",
        rule_id,
    )
    return [{**json.loads(row["changes"]), "topics": row["topics"]} for row in rows]


@pytest.mark.timeout(150)
async def test_worker_fires_sla_rules_once() -> None:
    marker = uuid.uuid4().hex[:10]
    calendar_id = await save_calendar(
        None,
        CalendarInput(
            name=unique("Always"), time_zone="UTC", hours=parse_hours_text(ALWAYS_OPEN)
        ),
        None,
    )
    team = await make_team()
    escalation_team = await make_team()
    lead = await make_user("support_agent", team=team)
    senior = await make_user("support_agent", team=escalation_team)
    manager = await make_user("admin")
    # Urgent has the same targets, so escalating moves no due time.
    targets = {"first_response": 60, "resolution": 200}
    await save_policy(
        None,
        PolicyInput(
            name=unique("Policy"),
            calendar_id=calendar_id,
            team_id=team,
            targets={"high": targets, "urgent": targets},
        ),
        None,
    )
    warning_rule = await save_rule(
        None,
        "ticket",
        f"Escalate {marker}",
        {
            "trigger": {"kind": "sla.warning"},
            "conditions": subject_and(marker),
            "actions": [
                {"kind": "set_field", "field": "priority", "value": "urgent"},
                {
                    "kind": "notify",
                    "team_id": team,
                    "body": "{details.metric} of {record.subject} is due soon",
                },
            ],
        },
        None,
    )
    breach_rule = await save_rule(
        None,
        "ticket",
        f"Reassign {marker}",
        {
            "trigger": {"kind": "sla.breached"},
            "conditions": subject_and(
                marker,
                {
                    "type": "condition",
                    "field": "details.metric",
                    "op": "equals",
                    "value": "first_response",
                },
            ),
            "actions": [
                {"kind": "assign", "team_id": escalation_team},
                {
                    "kind": "notify",
                    "user_id": manager.id,
                    "body": "{details.metric} of {record.subject} breached",
                },
            ],
        },
        None,
    )
    for rule_id in (warning_rule, breach_rule):
        await set_enabled(rule_id, True, None)
    try:
        ticket_id = await create_ticket(
            {
                "subject": f"Outage {marker}",
                "priority": "high",
                "team": str(team),
                "assignee": str(lead.id),
            },
            None,
        )
        found = await clocks(ticket_id)
        assert set(found) == {"first_response", "resolution"}

        # Three hours on, first response (1 h) is overdue and resolution
        # (200 min) is past its warning at 150 min but not yet due.
        start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)

        async def both_notified() -> bool:
            return all(
                [await notifications(warning_rule), await notifications(breach_rule)]
            )

        with worker_process({"CRM_CLOCK_START": start.isoformat()}) as worker:
            await wait_for(both_notified, seconds=90)
            # Two more checks must find nothing new.
            seen = await sla_check_runs()

            async def checked_twice() -> bool:
                assert worker.poll() is None, "the worker exited"
                return len(await sla_check_runs() - seen) >= 2

            await wait_for(checked_twice, seconds=60)

        warning_runs = await RuleRun.select().where(RuleRun.rule == warning_rule)
        breach_runs = await RuleRun.select().where(RuleRun.rule == breach_rule)
        assert [(r["trigger"], r["outcome"]) for r in warning_runs] == [
            ("sla.warning", "done")
        ]
        assert [(r["trigger"], r["outcome"]) for r in breach_runs] == [
            ("sla.breached", "done")
        ]

        rows = await RuleRun.raw(
            "SELECT priority, assignee, team FROM ticket WHERE id = {}", ticket_id
        )
        assert rows[0]["priority"] == "urgent"
        assert rows[0]["assignee"] == senior.id
        # A ticket of another team keeps its team when reassigned.
        assert rows[0]["team"] == team

        [warned] = await notifications(warning_rule)
        assert warned["message"] == f"resolution of Outage {marker} is due soon"
        assert f"user:{lead.id}" in warned["topics"]
        [breached] = await notifications(breach_rule)
        assert breached["message"] == f"first_response of Outage {marker} breached"
        assert breached["topics"] == [f"user:{manager.id}"]

        found = await clocks(ticket_id)
        assert found["first_response"]["breached_at"] is not None
        assert found["resolution"]["warned_at"] is not None
        assert found["resolution"]["breached_at"] is None
    finally:
        await WorkflowRule.delete().where(
            WorkflowRule.id.is_in([warning_rule, breach_rule])
        )
