"""Choosing the agent of a team who gets a ticket or a deal.

``assign`` locks the team's assignment policy row for the rest of the
transaction. Concurrent assignments to the same team, from any process,
therefore take turns. Each one reads the round-robin pointer and the open
counts that the one before it committed, and no two pick the same slot.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from app.assignment.online import online_user_ids
from app.assignment.tables import (
    STRATEGIES,
    AgentCapacity,
    AgentStatus,
    AssignmentPolicy,
)
from app.auth.tables import Team, User
from app.deals.service import update_deal
from app.errors import FieldError, NotFound
from app.events.service import change_set
from app.merge import Edit
from app.pagination import Page, PageRequest
from app.tickets.service import update_ticket

logger = logging.getLogger(__name__)

RECORD_TYPES = ("ticket", "deal")
# A capacity above this is a typing mistake rather than a limit.
MAX_CAPACITY = 10_000

LOCK_POLICY = """
    SELECT id, strategy, require_online, default_capacity, last_user
    FROM assignment_policy WHERE team = {} FOR UPDATE
"""

# Active members of the team with their away flag, capacity and the open
# records of the type being assigned that they hold now.
CANDIDATES = {
    "ticket": """
        SELECT u.id, coalesce(st.away, false) AS away,
               coalesce(cap.capacity, {}) AS capacity,
               (SELECT count(*) FROM ticket t WHERE t.assignee = u.id
                AND t.status IN ('new', 'open', 'pending', 'on_hold')) AS open_count
        FROM app_user u
        LEFT JOIN agent_status st ON st."user" = u.id
        LEFT JOIN assignment_capacity cap ON cap."user" = u.id AND cap.team = {}
        WHERE u.active AND u.id IN (
            SELECT m."user" FROM team_member m WHERE m.team = {}
            UNION SELECT x.id FROM app_user x WHERE x.team = {}
        )
        ORDER BY u.id
    """,
    "deal": """
        SELECT u.id, coalesce(st.away, false) AS away,
               coalesce(cap.capacity, {}) AS capacity,
               (SELECT count(*) FROM deal d JOIN stage s ON s.id = d.stage
                WHERE d.owner = u.id AND s.kind = 'open') AS open_count
        FROM app_user u
        LEFT JOIN agent_status st ON st."user" = u.id
        LEFT JOIN assignment_capacity cap ON cap."user" = u.id AND cap.team = {}
        WHERE u.active AND u.id IN (
            SELECT m."user" FROM team_member m WHERE m.team = {}
            UNION SELECT x.id FROM app_user x WHERE x.team = {}
        )
        ORDER BY u.id
    """,
}


@dataclass(frozen=True)
class Candidate:
    user_id: int
    away: bool
    capacity: int
    open_count: int

    @property
    def has_room(self) -> bool:
        return self.capacity == 0 or self.open_count < self.capacity


def round_robin(candidates: list[Candidate], last_user: int | None) -> Candidate:
    """Pick the first candidate after ``last_user`` by user id, wrapping."""
    if last_user is not None:
        for candidate in candidates:
            if candidate.user_id > last_user:
                return candidate
    return candidates[0]


def least_busy(candidates: list[Candidate], last_user: int | None) -> Candidate:
    """Pick the candidate with the fewest open records.

    Ties go round-robin from ``last_user``, so equally busy agents take turns.
    """
    fewest = min(candidate.open_count for candidate in candidates)
    tied = [candidate for candidate in candidates if candidate.open_count == fewest]
    return round_robin(tied, last_user)


async def lock_policy(team_id: int) -> dict[str, Any]:
    rows = await AssignmentPolicy.raw(LOCK_POLICY, team_id)
    if rows:
        return rows[0]
    # The first assignment to a team creates its policy with the defaults.
    await AssignmentPolicy.raw(
        "INSERT INTO assignment_policy (team) VALUES ({}) "
        "ON CONFLICT (team) DO NOTHING",
        team_id,
    )
    rows = await AssignmentPolicy.raw(LOCK_POLICY, team_id)
    return rows[0]


async def eligible_candidates(
    record_type: str, team_id: int, policy: dict[str, Any]
) -> list[Candidate]:
    rows = await AssignmentPolicy.raw(
        CANDIDATES[record_type],
        policy["default_capacity"],
        team_id,
        team_id,
        team_id,
    )
    candidates = [
        Candidate(
            user_id=row["id"],
            away=row["away"],
            capacity=row["capacity"],
            open_count=row["open_count"],
        )
        for row in rows
    ]
    available = [c for c in candidates if not c.away and c.has_room]
    if policy["require_online"] and available:
        online = await online_user_ids()
        available = [c for c in available if c.user_id in online]
    return available


async def current_assignee(
    record_type: str, record_id: int
) -> tuple[int | None, int | None]:
    """Return the record's assignee (or deal owner) and team."""
    if record_type == "ticket":
        rows = await AssignmentPolicy.raw(
            "SELECT assignee AS user_id, team FROM ticket WHERE id = {}", record_id
        )
    else:
        rows = await AssignmentPolicy.raw(
            "SELECT owner AS user_id, team FROM deal WHERE id = {}", record_id
        )
    if not rows:
        raise NotFound(record_type, record_id)
    return rows[0]["user_id"], rows[0]["team"]


async def set_assignee(
    record_type: str,
    record_id: int,
    user_id: int,
    team_id: int,
    actor_id: int | None,
) -> None:
    """Write the assignee through the record's own service, as a page would.

    A record without a team joins the team it was assigned in, so that the
    team's members can read it and its SLA policy applies. A record of
    another team keeps that team.
    """
    before, team_before = await current_assignee(record_type, record_id)
    person = "assignee" if record_type == "ticket" else "owner"
    edits = {person: Edit(base=before, new=user_id)}
    if team_before is None:
        edits["team"] = Edit(base=None, new=team_id)
    if record_type == "ticket":
        await update_ticket(record_id, edits, actor_id)
    else:
        await update_deal(record_id, edits, actor_id)


async def assign(
    record_type: str, record_id: int, team_id: int, actor_id: int | None = None
) -> int | None:
    """Assign a ticket or deal to the next available agent of a team.

    Agents who are away, at their capacity, or (when the team requires it)
    without an open socket are skipped. Returns the chosen user id, or None
    when nobody is available, in which case the record is left as it was.
    Inside an open ``change_set`` the assignment joins that transaction, and
    the team stays locked until it commits. ``actor_id`` is recorded as
    the author of the change (None for the system). Raises FieldError for an
    unknown record type and NotFound for a missing team or record.
    """
    if record_type not in RECORD_TYPES:
        raise FieldError("record_type", record_type, "must be ticket or deal")

    async with change_set(actor_id):
        if not await Team.exists().where(Team.id == team_id):
            raise NotFound("team", team_id)
        policy = await lock_policy(team_id)
        candidates = await eligible_candidates(record_type, team_id, policy)
        if not candidates:
            # Still checked, so a missing record is an error either way.
            await current_assignee(record_type, record_id)
            logger.info(
                "no agent available to assign %s_id=%s team_id=%s",
                record_type,
                record_id,
                team_id,
            )
            return None

        pick = round_robin if policy["strategy"] == "round_robin" else least_busy
        chosen = pick(candidates, policy["last_user"])
        await set_assignee(record_type, record_id, chosen.user_id, team_id, actor_id)
        await AssignmentPolicy.update(
            {AssignmentPolicy.last_user: chosen.user_id}
        ).where(AssignmentPolicy.id == policy["id"])

    logger.info(
        "assigned %s_id=%s team_id=%s user_id=%s strategy=%s",
        record_type,
        record_id,
        team_id,
        chosen.user_id,
        policy["strategy"],
    )
    return chosen.user_id


async def set_away(user_id: int, away: bool) -> None:
    """Mark an agent away (skipped by assignment) or back."""
    async with change_set(user_id) as changes:
        await AgentStatus.raw(
            'INSERT INTO agent_status ("user", away, changed_at) '
            "VALUES ({}, {}, now()) "
            'ON CONFLICT ("user") DO UPDATE SET away = EXCLUDED.away, '
            "changed_at = EXCLUDED.changed_at",
            user_id,
            away,
        )
        changes.add("agent.status", "user", user_id, [], {"away": [None, away]})
    logger.info("agent status changed user_id=%s away=%s", user_id, away)


async def is_away(user_id: int) -> bool:
    row = (
        await AgentStatus.select(AgentStatus.away)
        .where(AgentStatus.user == user_id)
        .first()
    )
    return bool(row and row["away"])


@dataclass
class PolicyInput:
    strategy: str
    require_online: bool
    default_capacity: int
    # {user_id: capacity}; 0 is no limit.
    capacities: dict[int, int]


def parse_capacity(name: str, raw: str | None) -> int:
    text = (raw or "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise FieldError(name, text, "is not a whole number") from None
    if not 0 <= value <= MAX_CAPACITY:
        raise FieldError(name, text, f"must be between 0 and {MAX_CAPACITY}")
    return value


MEMBERS = """
    FROM app_user u
    LEFT JOIN agent_status st ON st."user" = u.id
    LEFT JOIN assignment_capacity cap ON cap."user" = u.id AND cap.team = {}
    WHERE u.id IN (
        SELECT m."user" FROM team_member m WHERE m.team = {}
        UNION SELECT x.id FROM app_user x WHERE x.team = {}
    )
"""


async def get_team_policy(team_id: int, paging: PageRequest) -> dict[str, Any]:
    """Return a team's policy (defaults when it has none) and a page of members."""
    team = await Team.select(Team.id, Team.name).where(Team.id == team_id).first()
    if team is None:
        raise NotFound("team", team_id)
    policy = await AssignmentPolicy.select().where(
        AssignmentPolicy.team == team_id
    ).first() or {
        "strategy": "round_robin",
        "require_online": False,
        "default_capacity": 0,
        "last_user": None,
    }
    counted = await User.raw(
        f"SELECT count(*) AS n {MEMBERS}", team_id, team_id, team_id
    )
    rows = await User.raw(
        "SELECT u.id, u.name, u.email, u.active, coalesce(st.away, false) AS away, "
        "cap.capacity, "
        "(SELECT count(*) FROM ticket t WHERE t.assignee = u.id "
        " AND t.status IN ('new', 'open', 'pending', 'on_hold')) AS open_tickets "
        f"{MEMBERS} ORDER BY lower(u.name), u.id LIMIT {{}} OFFSET {{}}",
        team_id,
        team_id,
        team_id,
        paging.size,
        paging.offset,
    )
    members = Page(rows=rows, total=counted[0]["n"], paging=paging)
    return {"team": team, "policy": policy, "members": members}


async def save_team_policy(
    team_id: int, values: PolicyInput, actor_id: int | None
) -> None:
    """Set a team's strategy, online requirement and the capacities of the
    members in ``values.capacities``; other members keep theirs."""
    if values.strategy not in STRATEGIES:
        raise FieldError(
            "strategy", values.strategy, "must be round_robin or least_busy"
        )
    if not 0 <= values.default_capacity <= MAX_CAPACITY:
        raise FieldError(
            "default_capacity",
            values.default_capacity,
            f"must be between 0 and {MAX_CAPACITY}",
        )
    for user_id, capacity in values.capacities.items():
        if not 0 <= capacity <= MAX_CAPACITY:
            raise FieldError(
                f"capacity of user {user_id}",
                capacity,
                f"must be at most {MAX_CAPACITY}",
            )

    async with change_set(actor_id) as changes:
        if not await Team.exists().where(Team.id == team_id):
            raise NotFound("team", team_id)
        await lock_policy(team_id)
        if values.capacities:
            rows = await User.raw(f"SELECT u.id {MEMBERS}", team_id, team_id, team_id)
            members = {row["id"] for row in rows}
            for user_id in sorted(set(values.capacities) - members):
                raise FieldError("capacity", user_id, "is not a member of the team")
        await AssignmentPolicy.update(
            {
                AssignmentPolicy.strategy: values.strategy,
                AssignmentPolicy.require_online: values.require_online,
                AssignmentPolicy.default_capacity: values.default_capacity,
                AssignmentPolicy.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where(AssignmentPolicy.team == team_id)
        if values.capacities:
            await AgentCapacity.delete().where(
                (AgentCapacity.team == team_id)
                & AgentCapacity.user.is_in(list(values.capacities))
            )
        for user_id, capacity in sorted(values.capacities.items()):
            if capacity:
                await AgentCapacity.insert(
                    AgentCapacity(team=team_id, user=user_id, capacity=capacity)
                )
        changes.add(
            "assignment_policy.updated",
            "team",
            team_id,
            [],
            {
                "strategy": [None, values.strategy],
                "require_online": [None, values.require_online],
                "default_capacity": [None, values.default_capacity],
                "capacities": [None, {str(k): v for k, v in values.capacities.items()}],
            },
        )
    logger.info(
        "assignment policy saved team_id=%s user_id=%s strategy=%s",
        team_id,
        actor_id,
        values.strategy,
    )
