"""A burst of tickets through the JSON API, assigned round-robin by a rule.

200 tickets are created at once by concurrent API requests, split between
two real web processes, while two real arq workers deliver the rule's
notifications. Each process assigns the tickets it creates, so the team's
policy row lock in PostgreSQL is all that keeps the two processes'
assignments apart.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from app.api.keys import create_key
from app.assignment.service import PolicyInput, save_team_policy, set_away
from app.assignment.tables import AssignmentPolicy
from app.events.tables import Event
from app.tickets.tables import Ticket
from app.workflows.service import save_rule, set_enabled
from app.workflows.tables import RuleRun, WorkflowRule
from tests.factories import make_team, make_ticket, make_user, unique
from tests.servers import web_server, worker_process

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(240)]

TICKETS = 200
# Requests in flight at once; the client keeps this many connections open.
IN_FLIGHT = 50
FULL_CAPACITY = 2
# Every agent's limit of open tickets. Three available agents have 201
# places for the 200 tickets, so an assignment that counted another
# process's tickets late would put one agent over the limit.
DEFAULT_CAPACITY = 67


async def wait_for(check: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        # Polling is the point: the workers signal nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.25)


async def burst_team() -> dict[str, Any]:
    """Make a team of six agents: three available, one away, one with as
    many open tickets as their capacity, and one with more."""
    team_id = await make_team()
    agents = [
        (await make_user("support_agent", name=unique("Agent"), team=team_id)).id
        for _ in range(6)
    ]
    available, away, full, over = agents[:3], agents[3], agents[4], agents[5]
    await set_away(away, True)
    for _ in range(FULL_CAPACITY):
        await make_ticket(status="open", team=team_id, assignee=full)
    # Tickets assigned by hand may take an agent past their capacity.
    for _ in range(FULL_CAPACITY + 1):
        await make_ticket(status="open", team=team_id, assignee=over)
    await save_team_policy(
        team_id,
        PolicyInput(
            strategy="round_robin",
            require_online=False,
            default_capacity=DEFAULT_CAPACITY,
            capacities={full: FULL_CAPACITY, over: FULL_CAPACITY},
        ),
        None,
    )
    return {
        "team": team_id,
        "available": available,
        "away": away,
        "full": full,
        "over": over,
    }


async def burst_rule(team_id: int, marker: str) -> int:
    rule_id = await save_rule(
        None,
        "ticket",
        f"Burst {marker}",
        {
            "trigger": {"kind": "created"},
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
            "actions": [
                {"kind": "assign", "team_id": team_id},
                {"kind": "notify", "team_id": team_id, "body": "{record.subject}"},
            ],
        },
        None,
    )
    await set_enabled(rule_id, True, None)
    return rule_id


async def create_tickets(urls: list[str], token: str, marker: str) -> list[int]:
    """POST the tickets all at once, alternating between the web processes."""
    limits = httpx.Limits(max_connections=IN_FLIGHT // len(urls))
    headers = {"authorization": f"Bearer {token}"}
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in urls
    ]
    try:

        async def one(number: int) -> httpx.Response:
            api = clients[number % len(clients)]
            return await api.post(
                "/api/v1/tickets",
                json={"subject": f"Burst {marker} {number}", "priority": "high"},
                headers=headers,
            )

        responses = await asyncio.gather(*(one(n) for n in range(TICKETS)))
    finally:
        for client in clients:
            await client.aclose()
    failed = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 201]
    assert failed == []
    return [response.json()["id"] for response in responses]


def next_in_turn(available: list[int], previous: int) -> int:
    """Return the agent round-robin picks after ``previous``."""
    ordered = sorted(available)
    later = [user_id for user_id in ordered if user_id > previous]
    return later[0] if later else ordered[0]


async def test_burst_shares_tickets_evenly() -> None:
    setup = await burst_team()
    marker = uuid.uuid4().hex[:10]
    rule_id = await burst_rule(setup["team"], marker)
    intake = await make_user("admin", name=unique("Intake"))
    issued = await create_key(intake.id, unique("Burst key"), {"ticket": "write"}, None)
    try:
        with (
            web_server() as first,
            web_server() as second,
            worker_process(),
            worker_process(),
        ):
            started = time.monotonic()
            ticket_ids = await create_tickets(
                [first.url, second.url], issued.token, marker
            )
            took = time.monotonic() - started

            notified = Event.count().where(
                (Event.kind == "workflow.notified") & (Event.record_id == rule_id)
            )

            async def all_notified() -> bool:
                return await notified == TICKETS

            await wait_for(all_notified, seconds=120)

        assert len(set(ticket_ids)) == TICKETS
        rows = await Ticket.select(Ticket.id, Ticket.assignee, Ticket.team).where(
            Ticket.id.is_in(ticket_ids)
        )
        assert len(rows) == TICKETS
        assert [row["id"] for row in rows if row["assignee"] is None] == []
        assert {row["team"] for row in rows} == {setup["team"]}

        shares = Counter(row["assignee"] for row in rows)
        assert set(shares) == set(setup["available"]), shares
        assert max(shares.values()) - min(shares.values()) <= 1, shares
        assert setup["away"] not in shares
        assert setup["full"] not in shares
        assert setup["over"] not in shares
        assert max(shares.values()) <= DEFAULT_CAPACITY, shares

        # Each ticket's assignee was written once: one assignment event and
        # one finished rule run per ticket.
        assignments = await Event.raw(
            "SELECT id, record_id, changes->'assignee'->>1 AS assignee FROM event "
            "WHERE record_type = 'ticket' AND kind = 'ticket.updated' "
            "AND changes ? 'assignee' AND record_id = ANY({}) ORDER BY id",
            ticket_ids,
        )
        counts = Counter(row["record_id"] for row in assignments)
        assert sorted(counts) == sorted(ticket_ids)
        assert set(counts.values()) == {1}

        # The events are written while the team is locked, so their order is
        # the order of the assignments. Each one took the agent after the one
        # before it, and the team's pointer is the last one taken.
        taken = [int(row["assignee"]) for row in assignments]
        out_of_turn = [
            (index, previous, current)
            for index, (previous, current) in enumerate(itertools.pairwise(taken))
            if current != next_in_turn(setup["available"], previous)
        ]
        assert out_of_turn == []
        policy = (
            await AssignmentPolicy.select(AssignmentPolicy.last_user)
            .where(AssignmentPolicy.team == setup["team"])
            .first()
        )
        assert policy is not None
        assert policy["last_user"] == taken[-1]
        runs = await RuleRun.select(RuleRun.record_id, RuleRun.outcome).where(
            RuleRun.rule == rule_id
        )
        assert Counter(run["outcome"] for run in runs) == {"done": TICKETS}
        assert sorted(run["record_id"] for run in runs) == sorted(ticket_ids)
        print(f"{TICKETS} tickets created and assigned in {took:.1f} s")
    finally:
        await WorkflowRule.delete().where(WorkflowRule.id == rule_id)
