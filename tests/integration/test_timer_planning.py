"""Timers of a time-based rule for existing records, planned by a worker job.

Saving or enabling the rule only queues the planning, so these tests check
the timers before a worker runs and after a real arq worker planned them,
and the counts and confirmation the admin page shows first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import websockets

from app.tickets.service import create_ticket
from app.workflows import planning
from app.workflows.jobs import close_queue
from app.workflows.planning import get_plan, plan_batch, run_plan
from app.workflows.service import (
    count_planned_timers,
    get_rule,
    preview_timers,
    save_rule,
    set_enabled,
)
from app.workflows.tables import WorkflowRule, WorkflowTimer
from app.workflows.timers import mark_fired
from tests.browserless import Session
from tests.factories import make_user
from tests.servers import web_server, worker_process

pytestmark = pytest.mark.timeout(180)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def queue_closed() -> AsyncIterator[None]:
    """Close the arq connection that queueing the planning opened here."""
    yield
    await close_queue()


def follow_up_rule(marker: str, delay_minutes: int) -> dict[str, Any]:
    return {
        "trigger": {
            "kind": "time_after",
            "after": "created_at",
            "delay_minutes": delay_minutes,
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
        "actions": [{"kind": "add_tag", "tag": "followed-up"}],
    }


def follow_up_form(marker: str, delay_minutes: int) -> dict[str, str]:
    """Return the rule builder's fields for ``follow_up_rule``."""
    return {
        "object_type": "ticket",
        "name": f"Follow up {marker}",
        "trigger.kind": "time_after",
        "trigger.after": "created_at",
        "trigger.delay_minutes": str(delay_minutes),
        "match": "all",
        "condition.0.field": "subject",
        "condition.0.op": "contains",
        "condition.0.value": marker,
        "action.0.kind": "add_tag",
        "action.0.tag": "followed-up",
    }


async def timers_of(rule_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await WorkflowTimer.select()
        .where(WorkflowTimer.rule == rule_id)
        .order_by(WorkflowTimer.record_id)
    )
    return rows


async def created_at(ticket_id: int) -> dt.datetime:
    rows = await WorkflowRule.raw(
        "SELECT created_at FROM ticket WHERE id = {}", ticket_id
    )
    value: dt.datetime = rows[0]["created_at"]
    return value


async def wait_for_plan(
    rule_id: int, generation: int, seconds: float
) -> dict[str, Any]:
    """Poll the rule's planning run until that generation is done."""
    async with asyncio.timeout(seconds):
        while True:
            plan = await get_plan(rule_id)
            if plan and plan["generation"] == generation and plan["state"] == "done":
                return plan
            await asyncio.sleep(0.2)


async def frame_with(
    socket: websockets.ClientConnection, text: str, seconds: float
) -> str:
    """Return the first frame the page receives that contains ``text``."""
    async with asyncio.timeout(seconds):
        while True:
            frame = await socket.recv()
            if isinstance(frame, str) and text in frame:
                return frame


async def test_worker_plans_timers_after_save_returns() -> None:
    marker = uuid.uuid4().hex[:10]
    admin = await make_user("admin")
    tickets = [
        await create_ticket({"subject": f"Old {marker} {n}"}, None) for n in range(3)
    ]
    other = await create_ticket({"subject": "Unrelated"}, None)
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 60), None
    )
    try:
        with web_server() as server:
            session = Session(server.url)
            await session.sign_in(admin.email)
            socket = await session.live(f"topic=workflow-rule:{rule_id}")
            try:
                enabled = await session.post(
                    f"/admin/workflows/{rule_id}/enabled", {"enabled": "on"}, htmx=False
                )
                timers_after_enabling = await timers_of(rule_id)
                queued = await get_plan(rule_id)
                queued_page = await session.get(f"/admin/workflows/{rule_id}")

                # A second save while the first run still waits for a worker.
                await save_rule(
                    rule_id,
                    "ticket",
                    f"Follow up {marker}",
                    follow_up_rule(marker, 120),
                    admin.id,
                )
                second = await get_plan(rule_id)
                assert queued is not None
                assert second is not None

                with worker_process():
                    done = await wait_for_plan(rule_id, second["generation"], 90)
                    done_frame = await frame_with(socket, 'data-state="done"', 30)
                done_page = await session.get(f"/admin/workflows/{rule_id}")
            finally:
                await socket.close()
                await session.close()

        rule = await get_rule(rule_id)
        timers = await timers_of(rule_id)
        assert enabled.status_code == 302
        assert timers_after_enabling == []
        assert queued["state"] == "queued"
        assert 'data-state="queued"' in queued_page.text
        assert second["generation"] == queued["generation"] + 1
        assert second["rule_version"] == rule["version_id"]

        # Only the candidates of the SQL prefilter count, so "Unrelated" does
        # not. Earlier tests' tickets with non-ASCII text are candidates of
        # every text condition, so the total can be higher.
        assert done["done"] == done["total"]
        assert done["total"] >= len(tickets)
        assert done["scheduled"] == len(tickets)
        assert done["due_now"] == 0
        assert f'id="timer-plan-{rule_id}"' in done_frame
        assert f'<span class="scheduled">{len(tickets)}</span>' in done_frame
        assert (
            f'<span class="total">{done["total"]}</span> records checked' in done_frame
        )
        assert 'data-state="done"' in done_page.text

        assert [timer["record_id"] for timer in timers] == tickets
        assert other not in [timer["record_id"] for timer in timers]
        for timer in timers:
            assert timer["rule_version"] == rule["version_id"]
            assert timer["fired_at"] is None
            expected = await created_at(timer["record_id"]) + dt.timedelta(minutes=120)
            assert timer["due_at"] == expected
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_newer_save_stops_running_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planning, "PLAN_BATCH", 2)
    marker = uuid.uuid4().hex[:10]
    tickets = [
        await create_ticket({"subject": f"Old {marker} {n}"}, None) for n in range(3)
    ]
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 60), None
    )
    try:
        await set_enabled(rule_id, True, None)
        first = await get_plan(rule_id)
        assert first is not None
        progress = await plan_batch(rule_id, first["generation"])

        await save_rule(
            rule_id, "ticket", f"Follow up {marker}", follow_up_rule(marker, 90), None
        )
        second = await get_plan(rule_id)
        assert second is not None
        stopped = await plan_batch(rule_id, first["generation"])
        superseded = await run_plan(rule_id, first["generation"])
        finished = await run_plan(rule_id, second["generation"])
        rule = await get_rule(rule_id)
        timers = await timers_of(rule_id)

        assert progress is not None
        assert progress["state"] == "running"
        assert progress["done"] == 2
        assert stopped is None
        assert superseded == {"state": "superseded"}
        assert finished["state"] == "done"
        assert finished["done"] == finished["total"]
        assert [timer["record_id"] for timer in timers] == tickets
        assert {timer["rule_version"] for timer in timers} == {rule["version_id"]}
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_disabling_drops_pending_timers_and_plan() -> None:
    marker = uuid.uuid4().hex[:10]
    await create_ticket({"subject": f"Old {marker}"}, None)
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 60), None
    )
    try:
        await set_enabled(rule_id, True, None)
        plan = await get_plan(rule_id)
        assert plan is not None
        await run_plan(rule_id, plan["generation"])
        planned = await timers_of(rule_id)
        await set_enabled(rule_id, False, None)

        assert len(planned) == 1
        assert await timers_of(rule_id) == []
        assert await get_plan(rule_id) is None
        assert await run_plan(rule_id, plan["generation"]) == {"state": "superseded"}
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_counts_need_enabled_time_rule() -> None:
    marker = uuid.uuid4().hex[:10]
    for n in range(3):
        await create_ticket({"subject": f"Old {marker} {n}"}, None)
    due_at_once = follow_up_rule(marker, 0)
    later = follow_up_rule(marker, 60 * 24 * 365)
    on_create = {**due_at_once, "trigger": {"kind": "created"}}
    rule_id = await save_rule(None, "ticket", f"Follow up {marker}", later, None)
    try:
        while_disabled = await count_planned_timers(rule_id, "ticket", due_at_once)
        await set_enabled(rule_id, True, None)
        while_enabled = await count_planned_timers(rule_id, "ticket", due_at_once)
        previewed_later = await preview_timers("ticket", later)
        previewed_on_create = await preview_timers("ticket", on_create)

        assert while_disabled.as_dict() == {"matching": 0, "due_now": 0}
        assert while_enabled.as_dict() == {"matching": 3, "due_now": 3}
        assert previewed_later.as_dict() == {"matching": 3, "due_now": 0}
        assert previewed_on_create.as_dict() == {"matching": 0, "due_now": 0}
        assert not while_enabled.needs_confirmation
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_many_due_timers_need_confirmation() -> None:
    marker = uuid.uuid4().hex[:10]
    count = planning.CONFIRM_DUE_AT_ONCE
    for n in range(count):
        await create_ticket({"subject": f"Old {marker} {n}"}, None)
    admin = await make_user("admin")
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 0), None
    )
    try:
        with web_server() as server:
            session = Session(server.url)
            await session.sign_in(admin.email)
            try:
                counted = await session.post(
                    "/admin/workflows/timer-counts", follow_up_form(marker, 0)
                )
                counted_later = await session.post(
                    "/admin/workflows/timer-counts",
                    follow_up_form(marker, 60 * 24 * 30),
                )
                unconfirmed_enable = await session.post(
                    f"/admin/workflows/{rule_id}/enabled", {"enabled": "on"}, htmx=False
                )
                plan_before_confirming = await get_plan(rule_id)
                confirmed_enable = await session.post(
                    f"/admin/workflows/{rule_id}/enabled",
                    {"enabled": "on", "confirm_timers": "on"},
                    htmx=False,
                )
                version_before_save = (await get_rule(rule_id))["current_version"]
                unconfirmed_save = await session.post(
                    f"/admin/workflows/{rule_id}", follow_up_form(marker, 0), htmx=False
                )
                version_unconfirmed = (await get_rule(rule_id))["current_version"]
                confirmed_save = await session.post(
                    f"/admin/workflows/{rule_id}",
                    {**follow_up_form(marker, 0), "confirm_timers": "on"},
                    htmx=False,
                )
            finally:
                await session.close()
        rule = await get_rule(rule_id)

        assert counted.status_code == 200
        assert f'<strong class="matching">{count}</strong>' in counted.text
        assert f'<strong class="due-now">{count}</strong>' in counted.text
        assert f'<strong class="matching">{count}</strong>' in counted_later.text
        assert '<strong class="due-now">0</strong>' in counted_later.text

        assert unconfirmed_enable.status_code == 409
        assert 'name="confirm_timers"' in unconfirmed_enable.text
        assert f'<strong class="due-now">{count}</strong>' in unconfirmed_enable.text
        assert plan_before_confirming is None
        assert confirmed_enable.status_code == 302

        assert unconfirmed_save.status_code == 409
        assert 'name="confirm_timers"' in unconfirmed_save.text
        assert version_unconfirmed == version_before_save
        assert confirmed_save.status_code == 302
        assert rule["enabled"]
        assert rule["current_version"] == version_before_save + 1
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def test_planning_again_keeps_fired_timers_fired() -> None:
    marker = uuid.uuid4().hex[:10]
    ticket_id = await create_ticket({"subject": f"Old {marker}"}, None)
    rule_id = await save_rule(
        None, "ticket", f"Follow up {marker}", follow_up_rule(marker, 0), None
    )
    try:
        await set_enabled(rule_id, True, None)
        plan = await get_plan(rule_id)
        assert plan is not None
        await run_plan(rule_id, plan["generation"])
        [armed] = await timers_of(rule_id)
        # What the cron does once the rule ran for this record.
        await mark_fired(armed["id"])

        await set_enabled(rule_id, False, None)
        await set_enabled(rule_id, True, None)
        again = await get_plan(rule_id)
        assert again is not None
        replanned = await run_plan(rule_id, again["generation"])
        after_replanning = await timers_of(rule_id)

        await save_rule(
            rule_id, "ticket", f"Follow up {marker}", follow_up_rule(marker, 30), None
        )
        moved = await get_plan(rule_id)
        assert moved is not None
        await run_plan(rule_id, moved["generation"])
        after_new_delay = await timers_of(rule_id)

        assert replanned["scheduled"] == 0
        assert replanned["due_now"] == 0
        assert [(t["id"], t["fired_at"] is not None) for t in after_replanning] == [
            (armed["id"], True)
        ]
        pending = [t for t in after_new_delay if t["fired_at"] is None]
        assert [t["record_id"] for t in pending] == [ticket_id]
        assert pending[0]["due_at"] == await created_at(ticket_id) + dt.timedelta(
            minutes=30
        )
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
