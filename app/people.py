"""Choices of users and teams for forms and board filters."""

from __future__ import annotations

from typing import Any

from app.auth.tables import Team, User


async def people_choices() -> dict[str, list[dict[str, Any]]]:
    users = (
        await User.select(User.id, User.name)
        .where(User.active.eq(True))
        .order_by(User.name)
    )
    teams = await Team.select(Team.id, Team.name).order_by(Team.name)
    return {"users": users, "teams": teams}
