"""Timers racing other transactions: a rule deleted while one of its timers
fires, in both orders, and planning that reaches a timer while it fires.

A second connection holds row locks to stop each transaction at a known
point, and the test waits for the blocked backends in pg_stat_activity, so
the interleaving does not depend on timing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.tickets.tables import Ticket
from app.workflows.jobs import close_queue
from app.workflows.service import delete_rule, get_rule
from app.workflows.tables import RuleRun, WorkflowRule, WorkflowTimer
from app.workflows.timers import fire_one_timer, upsert_timer
from tests.factories import contains, enabled_rule, make_ticket, make_user

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

# Earlier than any timer another test sets, so that this one is claimed first.
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def blocker() -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, which holds the locks that stop the others."""
    connection = await WorkflowRule._meta.db.get_new_connection()
    yield connection
    await connection.close()
    # Enabling the rule queued its (time-based) planning from this process.
    await close_queue()


async def due_timer(rules: list[int]) -> tuple[int, int]:
    """Return a ticket and an enabled rule with a timer for it due long ago."""
    marker = uuid.uuid4().hex[:10]
    ticket_id = await make_ticket(subject=f"Due {marker}")
    rule_id = await enabled_rule(
        rules,
        {
            "trigger": {
                "kind": "time_after",
                "after": "created_at",
                "delay_minutes": 0,
            },
            "conditions": contains("subject", marker),
            "actions": [{"kind": "add_tag", "tag": "timer-fired"}],
        },
    )
    rule = await get_rule(rule_id)
    await upsert_timer(rule_id, rule["version_id"], "ticket", ticket_id, LONG_AGO)
    return ticket_id, rule_id


async def wait_for_blocked(connection: asyncpg.Connection, count: int) -> None:
    """Wait until ``count`` backends of this database wait for a lock."""
    async with asyncio.timeout(20):
        while True:
            # Within a transaction, pg_stat_activity keeps its first snapshot.
            await connection.execute("SELECT pg_stat_clear_snapshot()")
            blocked = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if blocked >= count:
                return
            await asyncio.sleep(0.02)


async def tags_of(ticket_id: int) -> list[Any]:
    rows = await Ticket.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    return list(rows[0]["tags"])


async def test_delete_waits_for_firing_timer(blocker, rules) -> None:
    admin = await make_user("admin")
    ticket_id, rule_id = await due_timer(rules)
    transaction = blocker.transaction()
    await transaction.start()
    try:
        # The timer's action changes the ticket, so the firing stops here,
        # after its claim.
        await blocker.execute(
            "SELECT 1 FROM ticket WHERE id = $1 FOR UPDATE", ticket_id
        )
        firing = asyncio.create_task(fire_one_timer())
        await wait_for_blocked(blocker, 1)
        deleting = asyncio.create_task(delete_rule(rule_id, admin.id))
        await wait_for_blocked(blocker, 2)
    finally:
        await transaction.rollback()
    fired = await firing
    deleted = await deleting

    assert fired is True
    assert deleted["id"] == rule_id
    assert await tags_of(ticket_id) == ["timer-fired"]
    assert await WorkflowRule.count().where(WorkflowRule.id == rule_id) == 0
    assert await WorkflowTimer.count().where(WorkflowTimer.rule == rule_id) == 0
    assert await RuleRun.count().where(RuleRun.rule == rule_id) == 0


async def test_claim_skips_rule_being_deleted(blocker, rules) -> None:
    ticket_id, rule_id = await due_timer(rules)
    transaction = blocker.transaction()
    await transaction.start()
    try:
        # A delete in progress: the rule's row is locked first.
        await blocker.execute(
            "SELECT 1 FROM workflow_rule WHERE id = $1 FOR UPDATE", rule_id
        )
        # A claim that waited for the rule's lock would wait for this test:
        # the guard turns that hang into a failure.
        async with asyncio.timeout(20):
            await fire_one_timer()
        pending = await WorkflowTimer.count().where(
            (WorkflowTimer.rule == rule_id) & WorkflowTimer.fired_at.is_null()
        )
        await blocker.execute("DELETE FROM workflow_rule WHERE id = $1", rule_id)
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()

    assert pending == 1
    assert await tags_of(ticket_id) == []
    assert await WorkflowTimer.count().where(WorkflowTimer.rule == rule_id) == 0


async def test_planning_waits_for_firing_timer(blocker, rules) -> None:
    ticket_id, rule_id = await due_timer(rules)
    rule = await get_rule(rule_id)
    transaction = blocker.transaction()
    await transaction.start()
    try:
        # The firing marks its timer fired, then stops at the ticket's lock.
        await blocker.execute(
            "SELECT 1 FROM ticket WHERE id = $1 FOR UPDATE", ticket_id
        )
        firing = asyncio.create_task(fire_one_timer())
        await wait_for_blocked(blocker, 1)
        # Planning reaches the same record and due time meanwhile.
        planning = asyncio.create_task(
            upsert_timer(rule_id, rule["version_id"], "ticket", ticket_id, LONG_AGO)
        )
        await wait_for_blocked(blocker, 2)
    finally:
        await transaction.rollback()
    fired = await firing
    armed = await planning

    assert fired is True
    assert armed is False
    pending = await WorkflowTimer.count().where(
        (WorkflowTimer.rule == rule_id) & WorkflowTimer.fired_at.is_null()
    )
    assert pending == 0
    assert await tags_of(ticket_id) == ["timer-fired"]
