"""Choices of users and teams for forms and board filters."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from piccolo.custom_types import Combinable

from app.auth.tables import Team, User


async def people_choices(
    keep: Collection[int | None] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Return active users and all teams; ``keep`` adds users even if inactive.

    A form passes the record's current owner or assignee, so that saving it
    does not quietly unassign someone who was deactivated.
    """
    kept = [user_id for user_id in keep if user_id is not None]
    condition: Combinable = User.active.eq(True)
    if kept:
        condition = condition | User.id.is_in(kept)
    users = await User.select(User.id, User.name).where(condition).order_by(User.name)
    teams = await Team.select(Team.id, Team.name).order_by(Team.name)
    return {"users": users, "teams": teams}
