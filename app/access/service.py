"""Managing users, their roles and teams, and the roles themselves.

Every change goes through ``change_set``, so it is recorded like a change
to a record. After commit, the sockets of users whose rights changed are
closed on every web process (``ACCESS_CHANGED``), and so are a deactivated
user's sessions and sockets.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis

from app import fields
from app.access.builtin import ADMIN_ROLE
from app.access.permissions import (
    FieldRule,
    Grants,
    parse_field_rules,
    parse_permissions,
)
from app.access.tables import Role, UserRole
from app.auth.passwords import hash_password
from app.auth.service import check_email, check_password
from app.auth.tables import Team, TeamMember, User
from app.config import Settings
from app.errors import FieldError, NotFound
from app.events.service import change_set, has_bus, publish_control
from app.pagination import Page, PageRequest, contains_pattern
from realtime.bus import Bus
from realtime.hub import ACCESS_CHANGED, USER_DEACTIVATED
from realtime.messages import Event

logger = logging.getLogger(__name__)

ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{1,59}")
MAX_LABEL = 120
MAX_TEAM_NAME = 120
MAX_USER_NAME = 200

USER_LIST_SQL = """
    SELECT u.id, u.email, u.name, u.active, t.name AS team_name,
        coalesce((SELECT string_agg(r.label, ', ' ORDER BY r.label)
                  FROM user_role ur JOIN role r ON r.id = ur.role_id
                  WHERE ur.user_id = u.id), '') AS role_labels
    FROM app_user u
    LEFT JOIN team t ON t.id = u.team
    WHERE {where}
    ORDER BY lower(u.name), u.id
    LIMIT {{}} OFFSET {{}}
"""


@dataclass(frozen=True)
class UserChanges:
    """Changes an admin makes to a user; None leaves a value as it is."""

    name: str | None = None
    role_ids: list[int] | None = None
    team_ids: list[int] | None = None
    primary_team: int | None = None


async def list_users(search: str, paging: PageRequest) -> Page[dict[str, Any]]:
    """List users whose name or email contains ``search``, by name."""
    args: list[object] = []
    where = "TRUE"
    if search:
        pattern = contains_pattern(search)
        args.extend([pattern, pattern])
        where = "(u.name ILIKE {} OR u.email ILIKE {})"
    counted = await User.raw(
        f"SELECT count(*) AS n FROM app_user u WHERE {where}", *args
    )
    total = counted[0]["n"]
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = await User.raw(
        USER_LIST_SQL.format(where=where), *args, paging.size, paging.offset
    )
    return Page(rows=rows, total=total, paging=paging)


async def get_user(user_id: int) -> dict[str, Any]:
    """Load a user with the ids of their roles and of the teams they are in."""
    row = (
        await User.select(
            User.id, User.email, User.name, User.active, User.team, User.version
        )
        .where(User.id == user_id)
        .first()
    )
    if row is None:
        raise NotFound("user", user_id)
    roles = await UserRole.select(UserRole.role_id).where(UserRole.user_id == user_id)
    teams = await TeamMember.select(TeamMember.team).where(TeamMember.user == user_id)
    row["role_ids"] = sorted(role["role_id"] for role in roles)
    team_ids = {team["team"] for team in teams}
    if row["team"] is not None:
        team_ids.add(row["team"])
    row["team_ids"] = sorted(team_ids)
    return row


async def check_role_ids(role_ids: list[int]) -> None:
    if not role_ids:
        raise FieldError("roles", "", "must include at least one role")
    found = await Role.select(Role.id).where(Role.id.is_in(role_ids))
    missing = set(role_ids) - {row["id"] for row in found}
    if missing:
        raise FieldError("roles", min(missing), "is not a role")


async def check_team_ids(team_ids: list[int], primary_team: int | None) -> None:
    if team_ids:
        found = await Team.select(Team.id).where(Team.id.is_in(team_ids))
        missing = set(team_ids) - {row["id"] for row in found}
        if missing:
            raise FieldError("teams", min(missing), "is not a team")
    if primary_team is not None and primary_team not in team_ids:
        raise FieldError(
            "primary_team", primary_team, "must be one of the user's teams"
        )


async def admin_user_ids(excluding: int | None = None) -> set[int]:
    """Return the active users who hold the built-in admin role."""
    rows = await UserRole.raw(
        "SELECT ur.user_id FROM user_role ur JOIN role r ON r.id = ur.role_id "
        "JOIN app_user u ON u.id = ur.user_id "
        "WHERE r.name = {} AND u.active",
        ADMIN_ROLE,
    )
    return {row["user_id"] for row in rows} - {excluding}


async def admin_role_id() -> int | None:
    row = await Role.select(Role.id).where(Role.name == ADMIN_ROLE).first()
    return row["id"] if row else None


async def create_user_account(
    email: str,
    name: str,
    password: str,
    role_ids: list[int],
    team_ids: list[int],
    primary_team: int | None,
    actor_id: int,
) -> int:
    """Create a user with roles and teams. Raises FieldError for bad input,
    naming the field, and for an email already taken."""
    email = check_email(email)
    name = fields.text("name", name, required=True, max_length=MAX_USER_NAME)
    check_password(password)
    await check_role_ids(role_ids)
    await check_team_ids(team_ids, primary_team)
    if await User.exists().where(User.email == email):
        raise FieldError("email", email, "belongs to another user already")

    roles = await Role.select(Role.id, Role.name).where(Role.id.is_in(role_ids))
    first_role = min(roles, key=lambda role: role["id"])["name"]
    async with change_set(actor_id) as changes:
        rows = await User.insert(
            User(
                email=email,
                name=name,
                role=first_role,
                password_hash=hash_password(password),
                active=True,
                team=primary_team,
            )
        ).returning(User.id)
        user_id = rows[0]["id"]
        await write_roles(user_id, role_ids)
        await write_teams(user_id, team_ids)
        changes.add(
            "user.created",
            "user",
            user_id,
            [],
            {
                "email": [None, email],
                "name": [None, name],
                "roles": [None, sorted(role_ids)],
                "teams": [None, sorted(team_ids)],
                "team": [None, primary_team],
            },
        )

    logger.info("user created user_id=%s by user_id=%s", user_id, actor_id)
    return user_id


async def write_roles(user_id: int, role_ids: list[int]) -> None:
    await UserRole.delete().where(
        (UserRole.user_id == user_id) & UserRole.role_id.not_in(role_ids)
    )
    for role_id in role_ids:
        await UserRole.raw(
            "INSERT INTO user_role (user_id, role_id) VALUES ({}, {}) "
            "ON CONFLICT DO NOTHING",
            user_id,
            role_id,
        )


async def write_teams(user_id: int, team_ids: list[int]) -> None:
    delete = TeamMember.delete().where(TeamMember.user == user_id)
    if team_ids:
        delete = delete.where(TeamMember.team.not_in(team_ids))
    await delete
    for team_id in team_ids:
        await TeamMember.raw(
            'INSERT INTO team_member (team, "user") VALUES ({}, {}) '
            "ON CONFLICT DO NOTHING",
            team_id,
            user_id,
        )


async def update_user(user_id: int, update: UserChanges, actor_id: int) -> bool:
    """Set a user's name, roles and teams; return True when anything changed.

    Raises FieldError for an unknown role or team, for no role at all, and
    for a change that would leave no active administrator.
    """
    current = await get_user(user_id)
    after: dict[str, Any] = {}
    if update.name is not None:
        after["name"] = fields.text(
            "name", update.name, required=True, max_length=MAX_USER_NAME
        )
    if update.role_ids is not None:
        await check_role_ids(update.role_ids)
        after["role_ids"] = sorted(set(update.role_ids))
        admin_id = await admin_role_id()
        losing_admin = (
            admin_id in current["role_ids"] and admin_id not in (after["role_ids"])
        )
        if losing_admin and not await admin_user_ids(excluding=user_id):
            raise FieldError("roles", "", "must keep one active administrator")
    if update.team_ids is not None:
        await check_team_ids(update.team_ids, update.primary_team)
        after["team_ids"] = sorted(set(update.team_ids))
        after["team"] = update.primary_team

    changed = {
        name: [current[name], value]
        for name, value in after.items()
        if current[name] != value
    }
    if not changed:
        return False

    async with change_set(actor_id) as changes:
        values: dict[Any, Any] = {
            User.version: User.version + 1,
        }
        if "name" in changed:
            values[User.name] = after["name"]
        if "team" in changed:
            values[User.team] = after["team"]
        await User.update(values).where(User.id == user_id)
        if "role_ids" in changed:
            await write_roles(user_id, after["role_ids"])
        if "team_ids" in changed:
            await write_teams(user_id, after["team_ids"])
        recorded = {
            {"role_ids": "roles", "team_ids": "teams"}.get(name, name): value
            for name, value in changed.items()
        }
        changes.add("user.updated", "user", user_id, [], recorded)

    logger.info(
        "user updated user_id=%s by user_id=%s fields=%s",
        user_id,
        actor_id,
        sorted(changed),
    )
    if {"role_ids", "team_ids", "team"} & changed.keys():
        await announce_access_changed([user_id])
    return True


async def set_active(user_id: int, active: bool, actor_id: int) -> int:
    """Deactivate or reactivate a user; return how many sessions ended.

    Deactivation ends the user's sessions and closes their sockets on every
    web process at once. Raises FieldError for deactivating oneself or the
    last active administrator.
    """
    current = await get_user(user_id)
    if current["active"] == active:
        return 0
    if not active:
        if user_id == actor_id:
            raise FieldError(
                "active", None, "cannot be turned off for your own account"
            )
        admin_id = await admin_role_id()
        is_admin = admin_id in current["role_ids"]
        if is_admin and not await admin_user_ids(excluding=user_id):
            raise FieldError(
                "active", user_id, "must stay on for the last administrator"
            )

    async with change_set(actor_id) as changes:
        await User.update({User.active: active, User.version: User.version + 1}).where(
            User.id == user_id
        )
        kind = "user.reactivated" if active else "user.deactivated"
        changes.add(kind, "user", user_id, [], {"active": [not active, active]})

    logger.info(
        "user %s user_id=%s by user_id=%s",
        "reactivated" if active else "deactivated",
        user_id,
        actor_id,
    )
    if active:
        return 0
    await publish_everywhere([(USER_DEACTIVATED, {"user_id": user_id})])
    from app.auth.sessions import end_all_sessions

    return await end_all_sessions(user_id)


async def announce_access_changed(user_ids: list[int]) -> None:
    """Close the sockets of these users on every web process; pages reload.

    Users whose roles now require two-factor sign-in they have not set up
    are signed out instead.
    """
    await publish_everywhere(
        [(ACCESS_CHANGED, {"user_id": user_id}) for user_id in user_ids]
    )
    logger.info("access changed user_ids=%s", user_ids)
    await end_sessions_without_two_factor(user_ids)


async def publish_everywhere(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish control events through this process's bus, or, in a process
    without one (a command, a worker), through a connection of its own."""
    if has_bus():
        for kind, changes in messages:
            await publish_control(kind, changes)
        return
    settings = Settings.from_env()
    events = [
        Event(id=0, kind=kind, topics=[], record_type="", record_id=0, changes=changes)
        for kind, changes in messages
    ]
    async with Redis.from_url(settings.redis_url) as redis:
        await Bus(redis, settings.redis_prefix).publish(events)


async def list_teams(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await Team.count()
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = await Team.raw(
        "SELECT t.id, t.name, t.region, "
        '(SELECT count(DISTINCT m."user") FROM team_member m WHERE m.team = t.id)'
        " AS member_count "
        "FROM team t ORDER BY lower(t.name), t.id LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def all_teams() -> list[dict[str, Any]]:
    return await Team.select(Team.id, Team.name).order_by(Team.name)


async def save_team(team_id: int | None, name: str, region: str, actor_id: int) -> int:
    """Create a team (``team_id`` None) or rename one; names are unique."""
    name = fields.text("name", name, required=True, max_length=MAX_TEAM_NAME)
    region = fields.text("region", region, max_length=MAX_TEAM_NAME)
    taken = Team.exists().where(Team.name == name)
    if team_id is not None:
        taken = taken.where(Team.id != team_id)
    if await taken:
        raise FieldError("name", name, "belongs to another team already")

    async with change_set(actor_id) as changes:
        if team_id is None:
            rows = await Team.insert(Team(name=name, region=region)).returning(Team.id)
            team_id = rows[0]["id"]
            changes.add(
                "team.created",
                "team",
                team_id,
                [],
                {"name": [None, name], "region": [None, region]},
            )
        else:
            before = (
                await Team.select(Team.name, Team.region)
                .where(Team.id == team_id)
                .first()
            )
            if before is None:
                raise NotFound("team", team_id)
            await Team.update(
                {Team.name: name, Team.region: region, Team.version: Team.version + 1}
            ).where(Team.id == team_id)
            changes.add(
                "team.updated",
                "team",
                team_id,
                [],
                {"name": [before["name"], name], "region": [before["region"], region]},
            )
    logger.info("team saved team_id=%s by user_id=%s", team_id, actor_id)
    return team_id


async def list_roles(paging: PageRequest) -> Page[dict[str, Any]]:
    total = await Role.count()
    if paging.offset >= total:
        return Page(rows=[], total=total, paging=paging)
    rows = await Role.raw(
        "SELECT r.id, r.name, r.label, r.builtin, r.require_two_factor, "
        "(SELECT count(*) FROM user_role ur WHERE ur.role_id = r.id) AS user_count "
        "FROM role r ORDER BY r.builtin DESC, lower(r.label), r.id "
        "LIMIT {} OFFSET {}",
        paging.size,
        paging.offset,
    )
    return Page(rows=rows, total=total, paging=paging)


async def all_roles() -> list[dict[str, Any]]:
    return await Role.select(Role.id, Role.name, Role.label).order_by(Role.id)


async def get_role(role_id: int) -> dict[str, Any]:
    row = await Role.select().where(Role.id == role_id).first()
    if row is None:
        raise NotFound("role", role_id)
    return row


@dataclass(frozen=True)
class RoleInput:
    """A role as the admin form submits it, before validation."""

    name: str
    label: str
    permissions: Any
    field_rules: Any
    require_two_factor: bool = False


def check_role_input(
    role: RoleInput,
) -> tuple[dict[str, Grants], dict[str, dict[str, FieldRule]]]:
    if not ROLE_NAME.fullmatch(role.name):
        raise FieldError(
            "name",
            role.name,
            "must be 2 to 60 lower-case letters, digits or underscores, "
            "starting with a letter",
        )
    fields.text("label", role.label, required=True, max_length=MAX_LABEL)
    return parse_permissions(role.permissions), parse_field_rules(role.field_rules)


def grid_json(permissions: dict[str, Grants]) -> dict[str, dict[str, str]]:
    return {
        object_type: {
            "read": grants.read,
            "create": grants.create,
            "edit": grants.edit,
            "delete": grants.delete,
        }
        for object_type, grants in permissions.items()
    }


async def save_role(role_id: int | None, role: RoleInput, actor_id: int) -> int:
    """Create a role (``role_id`` None) or change one.

    Raises FieldError, naming the field and value, for an invalid name,
    label, scope or field rule, for a name already taken, and for a change
    to the admin role's grants, which always allow everything.
    """
    permissions, field_rules = check_role_input(role)
    taken = Role.exists().where(Role.name == role.name)
    if role_id is not None:
        taken = taken.where(Role.id != role_id)
    if await taken:
        raise FieldError("name", role.name, "belongs to another role already")

    values = {
        "name": role.name,
        "label": role.label.strip(),
        "permissions": grid_json(permissions),
        "field_rules": field_rules,
        "require_two_factor": role.require_two_factor,
    }
    holders: list[int] = []
    async with change_set(actor_id) as changes:
        if role_id is None:
            rows = await Role.raw(
                "INSERT INTO role (name, label, builtin, permissions, field_rules, "
                "require_two_factor) VALUES ({}, {}, false, {}::jsonb, {}::jsonb, {}) "
                "RETURNING id",
                values["name"],
                values["label"],
                encode_json(values["permissions"]),
                encode_json(values["field_rules"]),
                values["require_two_factor"],
            )
            role_id = rows[0]["id"]
            changes.add(
                "role.created",
                "role",
                role_id,
                [],
                {name: [None, value] for name, value in values.items()},
            )
        else:
            before = await get_role(role_id)
            before = {
                **before,
                "permissions": decode_json(before["permissions"]),
                "field_rules": decode_json(before["field_rules"]),
            }
            if before["builtin"] and values["name"] != before["name"]:
                raise FieldError("name", role.name, "of a built-in role cannot change")
            if before["name"] == ADMIN_ROLE and (
                values["permissions"] != before["permissions"]
                or values["field_rules"] != before["field_rules"]
            ):
                raise FieldError(
                    "permissions", ADMIN_ROLE, "of the admin role cannot change"
                )
            changed = {
                name: [before[name], value]
                for name, value in values.items()
                if before[name] != value
            }
            if not changed:
                return role_id
            await Role.raw(
                "UPDATE role SET name = {}, label = {}, permissions = {}::jsonb, "
                "field_rules = {}::jsonb, require_two_factor = {}, "
                "version = version + 1, updated_at = now() WHERE id = {}",
                values["name"],
                values["label"],
                encode_json(values["permissions"]),
                encode_json(values["field_rules"]),
                values["require_two_factor"],
                role_id,
            )
            changes.add("role.updated", "role", role_id, [], changed)
            rows = await UserRole.select(UserRole.user_id).where(
                UserRole.role_id == role_id
            )
            holders = [row["user_id"] for row in rows]

    logger.info("role saved role_id=%s by user_id=%s", role_id, actor_id)
    if holders:
        await announce_access_changed(holders)
    return role_id


async def end_sessions_without_two_factor(user_ids: list[int]) -> None:
    """Sign out the users whose roles now require a second factor they have
    not set up, so that their next sign-in takes them to enrolment."""
    from app.auth.sessions import end_all_sessions
    from app.auth.two_factor import is_enrolled, required_by_role

    for user_id in user_ids:
        if await required_by_role(user_id) and not await is_enrolled(user_id):
            ended = await end_all_sessions(user_id)
            logger.info(
                "two-factor now required, sessions ended user_id=%s count=%d",
                user_id,
                ended,
            )


def encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def decode_json(value: Any) -> Any:
    if isinstance(value, str):
        return msgspec.json.decode(value)
    return value
