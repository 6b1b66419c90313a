import asyncio
import os
import time
from collections import Counter

import pytest
from redis.asyncio import Redis

from app.assignment.service import (
    PolicyInput,
    assign,
    save_team_policy,
    set_away,
)
from app.deals.tables import Deal
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.tickets.tables import Ticket
from realtime.messages import Viewer
from realtime.presence import Presence
from tests.factories import make_deal, make_pipeline, make_team, make_ticket, make_user
from tests.servers import worker_process
from workers.connection import open_queue

pytestmark = pytest.mark.timeout(120)


async def team_with_agents(count: int) -> tuple[int, list[int]]:
    team = await make_team()
    users = [(await make_user("support_agent", team=team)).id for _ in range(count)]
    return team, sorted(users)


async def set_policy(
    team: int,
    strategy: str = "round_robin",
    default_capacity: int = 0,
    capacities: dict[int, int] | None = None,
    require_online: bool = False,
) -> None:
    await save_team_policy(
        team,
        PolicyInput(
            strategy=strategy,
            require_online=require_online,
            default_capacity=default_capacity,
            capacities=capacities or {},
        ),
        None,
    )


async def assignee(ticket_id: int) -> int | None:
    row = await Ticket.select(Ticket.assignee).where(Ticket.id == ticket_id).first()
    assert row is not None
    return row["assignee"]


async def test_round_robin_cycles_members() -> None:
    team, users = await team_with_agents(3)
    tickets = [await make_ticket(team=team) for _ in range(6)]

    chosen = [await assign("ticket", ticket, team) for ticket in tickets]

    assert chosen == users + users
    assert [await assignee(ticket) for ticket in tickets] == chosen


async def test_away_agent_is_skipped() -> None:
    team, users = await team_with_agents(3)
    await set_away(users[1], True)

    chosen = [
        await assign("ticket", await make_ticket(team=team), team) for _ in range(4)
    ]

    assert users[1] not in chosen
    assert Counter(chosen) == {users[0]: 2, users[2]: 2}


async def test_least_busy_prefers_fewest_open() -> None:
    team, users = await team_with_agents(3)
    await set_policy(team, strategy="least_busy")
    for _ in range(2):
        await make_ticket(status="open", team=team, assignee=users[0])
    await make_ticket(status="open", team=team, assignee=users[1])
    # Solved tickets are not open work.
    for _ in range(5):
        await make_ticket(status="solved", team=team, assignee=users[2])

    first = await assign("ticket", await make_ticket(team=team), team)
    second = await assign("ticket", await make_ticket(team=team), team)

    assert first == users[2]
    # users[1] and users[2] now hold one open ticket each; the tie goes on
    # round-robin after users[2], which wraps to users[1].
    assert second == users[1]


async def test_least_busy_counts_open_deals() -> None:
    team, users = await team_with_agents(2)
    await set_policy(team, strategy="least_busy")
    pipeline = await make_pipeline()
    await make_deal(pipeline, stage_index=0, owner=users[0], team=team)
    # Won deals are not open work.
    for _ in range(3):
        await make_deal(pipeline, stage_index=2, owner=users[1], team=team)
    deal = await make_deal(pipeline, stage_index=0, team=team)

    chosen = await assign("deal", deal, team)
    row = await Deal.select(Deal.owner).where(Deal.id == deal).first()

    assert chosen == users[1]
    assert row is not None
    assert row["owner"] == users[1]


async def test_capacity_limits_and_then_nobody() -> None:
    team, users = await team_with_agents(2)
    await set_policy(team, default_capacity=1, capacities={users[1]: 2})

    chosen = [
        await assign("ticket", await make_ticket(team=team), team) for _ in range(4)
    ]

    assert chosen == [users[0], users[1], users[1], None]


async def test_require_online_uses_presence() -> None:
    team, users = await team_with_agents(2)
    await set_policy(team, require_online=True)
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    await presence.set("tickets", f"socket-{users[1]}", Viewer(users[1], "Online"))
    try:
        chosen = [
            await assign("ticket", await make_ticket(team=team), team) for _ in range(2)
        ]
    finally:
        await presence.remove("tickets", f"socket-{users[1]}")
        await redis.aclose()

    assert chosen == [users[1], users[1]]


async def test_assign_inside_open_change_set_rolls_back() -> None:
    team, users = await team_with_agents(1)
    ticket = await make_ticket(team=team)

    with pytest.raises(RuntimeError):
        async with change_set(None):
            assert await assign("ticket", ticket, team) == users[0]
            raise RuntimeError("the caller's transaction fails")

    assert await assignee(ticket) is None


async def test_assign_rejects_bad_input() -> None:
    team, _ = await team_with_agents(1)

    with pytest.raises(FieldError):
        await assign("contact", 1, team)
    with pytest.raises(NotFound):
        await assign("ticket", 2_000_000_000, team)
    with pytest.raises(FieldError) as raised:
        await set_policy(team, strategy="random")
    assert raised.value.field == "strategy"


async def test_burst_from_two_workers_is_fair() -> None:
    team, users = await team_with_agents(5)
    away = users[4]
    await set_away(away, True)
    tickets = [await make_ticket(team=team) for _ in range(200)]
    queue = await open_queue(os.environ["REDIS_URL"], os.environ["REDIS_PREFIX"])

    jobs = [
        await queue.enqueue_job("assign_record", "ticket", ticket, team)
        for ticket in tickets
    ]
    started = time.monotonic()
    with worker_process(), worker_process():
        results = [await job.result(timeout=90) for job in jobs if job is not None]
    elapsed = time.monotonic() - started
    await queue.aclose()

    shares = Counter(results)
    stored = Counter([await assignee(ticket) for ticket in tickets])
    print(f"200 assignments over two workers: {elapsed:.1f} s")
    print(f"tickets per agent: {sorted(shares.values())}")

    assert len(results) == 200
    assert stored == shares
    assert away not in shares
    assert set(shares) == set(users[:4])
    assert max(shares.values()) - min(shares.values()) <= 1
    await asyncio.sleep(0)
