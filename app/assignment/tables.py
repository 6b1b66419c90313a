"""Assignment policies per team, agent capacities and agents' away status."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import Team, User

STRATEGIES = ("round_robin", "least_busy")


class AssignmentPolicy(Table, tablename="assignment_policy"):
    """The rule by which a team's new work is shared out.

    ``last_user`` is the round-robin pointer: the next pick is the first
    eligible member with a larger user id, wrapping around. Assigning locks
    this row, so concurrent assignments to one team take turns.
    """

    id: Serial
    team = ForeignKey(Team, null=False, unique=True, on_delete=OnDelete.cascade)
    strategy = Varchar(length=20, default="round_robin")
    require_online = Boolean(default=False)
    # Open records an agent may hold; 0 is no limit.
    default_capacity = Integer(default=0)
    last_user = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class AgentCapacity(Table, tablename="assignment_capacity"):
    """An agent's own limit of open records in one team, over its default."""

    id: Serial
    team = ForeignKey(Team, null=False, on_delete=OnDelete.cascade)
    user = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    # Open records this agent may hold; 0 is no limit.
    capacity = Integer(default=0)


class AgentStatus(Table, tablename="agent_status"):
    """Whether an agent is away; agents without a row are available."""

    id: Serial
    user = ForeignKey(User, null=False, unique=True, on_delete=OnDelete.cascade)
    away = Boolean(default=False)
    changed_at = Timestamptz(default=TimestamptzNow())
