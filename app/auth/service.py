"""Creating users and checking sign-ins."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import Any, cast

import msgspec
from piccolo.columns import Column

from app import fields
from app.access.permissions import Access, FieldRule, Grants, RoleRules, resolve
from app.access.tables import Role, UserRole
from app.auth.passwords import hash_password, verify_password
from app.auth.tables import User
from app.errors import FieldError
from app.events.service import change_set

logger = logging.getLogger(__name__)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
MAX_NAME = 200


class CurrentUser(msgspec.Struct, frozen=True):
    """The signed-in user, as every request and socket receives it.

    ``role`` is the role the user was created with. ``roles`` are the ones
    they hold now, and ``access`` is what those roles let them see and do.
    """

    id: int
    email: str
    name: str
    role: str
    roles: tuple[str, ...] = ()
    team_ids: tuple[int, ...] = ()
    access: Access = Access()


class HeldRole(msgspec.Struct, frozen=True):
    name: str
    permissions: dict[str, Grants] = {}
    field_rules: dict[str, dict[str, FieldRule]] = {}


# One query per request: the user, the rules of their roles and their teams
# (the primary team and every team they are a member of).
LOAD_USER = """
SELECT u.id, u.email, u.name, u.role,
    (SELECT coalesce(json_agg(json_build_object(
            'name', r.name,
            'permissions', r.permissions,
            'field_rules', r.field_rules) ORDER BY r.name), '[]'::json)::text
     FROM user_role ur JOIN role r ON r.id = ur.role_id
     WHERE ur.user_id = u.id) AS roles,
    ARRAY(SELECT m.team FROM team_member m WHERE m."user" = u.id
          UNION SELECT u.team WHERE u.team IS NOT NULL) AS team_ids
FROM app_user u
WHERE u.id = {} AND u.active
"""


def check_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise FieldError("email", email, "is not a valid email address")
    return email


def check_password(password: str) -> None:
    """Raise FieldError, without the value, for a password that is too short
    or contains a NUL character, which no sign-in form can send."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise FieldError(
            "password", None, f"must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    if "\x00" in password:
        raise FieldError("password", None, "contains a NUL character")


async def create_user(email: str, name: str, role: str, password: str) -> CurrentUser:
    """Create a user, or set the name, password and only role of an existing one.

    Raises FieldError for an invalid email, an empty name, a short password
    or a role that does not exist.
    """
    email = check_email(email)
    name = fields.text("name", name, required=True, max_length=MAX_NAME)
    check_password(password)
    role_row = await Role.select(Role.id).where(Role.name == role).first()
    if role_row is None:
        names = [row["name"] for row in await Role.select(Role.name).order_by(Role.id)]
        raise FieldError("role", role, f"must be one of {', '.join(names)}")

    values: dict[Column | str, Any] = {
        User.name: name.strip(),
        User.role: role,
        User.password_hash: hash_password(password),
        User.active: True,
    }
    async with change_set() as changes:
        existing = await User.select(User.id).where(User.email == email).first()
        if existing:
            user_id = existing["id"]
            values[User.version] = User.version + 1
            values[User.updated_at] = now()
            await User.update(values).where(User.id == user_id)
            await UserRole.delete().where(
                (UserRole.user_id == user_id) & (UserRole.role_id != role_row["id"])
            )
            kind = "user.updated"
        else:
            values[User.email] = email
            rows = await User.insert(User(cast("dict[Column, Any]", values))).returning(
                User.id
            )
            user_id = rows[0]["id"]
            kind = "user.created"
        # A new user got the role from the insert trigger already.
        await UserRole.raw(
            "INSERT INTO user_role (user_id, role_id) VALUES ({}, {}) "
            "ON CONFLICT DO NOTHING",
            user_id,
            role_row["id"],
        )
        changes.add(kind, "user", user_id, [], {"roles": [None, [role]]})

    logger.info("user saved user_id=%s role=%s", user_id, role)
    return CurrentUser(id=user_id, email=email, name=name.strip(), role=role)


async def authenticate(email: str, password: str) -> CurrentUser | None:
    """Return the user these credentials belong to, or None.

    Unknown emails, inactive users and wrong passwords all return None after
    the same amount of work, so a caller cannot tell them apart.
    """
    row = (
        await User.select(
            User.id, User.email, User.name, User.role, User.password_hash, User.active
        )
        .where(User.email == email.strip().lower())
        .first()
    )
    valid = verify_password(row["password_hash"] if row else None, password)
    if not (row and valid and row["active"]):
        logger.info("sign-in failed")
        return None

    await User.update({User.last_sign_in_at: now()}).where(User.id == row["id"])
    logger.info("sign-in succeeded user_id=%s", row["id"])
    return CurrentUser(
        id=row["id"], email=row["email"], name=row["name"], role=row["role"]
    )


async def load_user(user_id: int) -> CurrentUser | None:
    """Load an active user with their roles, teams and resolved access."""
    rows = await User.raw(LOAD_USER, user_id)
    if not rows:
        return None
    row = rows[0]
    team_ids = tuple(sorted(row["team_ids"] or ()))
    names, access = resolve_roles(row["id"], team_ids, row["roles"])
    return CurrentUser(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        roles=names,
        team_ids=team_ids,
        access=access,
    )


@functools.lru_cache(maxsize=4096)
def resolve_roles(
    user_id: int, team_ids: tuple[int, ...], roles_json: str
) -> tuple[tuple[str, ...], Access]:
    """Decode the rules of a user's roles and combine them, once per change.

    A role whose stored rules are invalid grants nothing, and is logged,
    rather than locking its users out of every page.
    """
    held: list[HeldRole] = []
    for raw in msgspec.json.decode(roles_json):
        try:
            held.append(msgspec.convert(raw, HeldRole))
        except msgspec.ValidationError as error:
            logger.error(
                "invalid stored role rules user_id=%s role=%s: %s",
                user_id,
                raw.get("name"),
                error,
            )
    rules = [RoleRules(role.permissions, role.field_rules) for role in held]
    return tuple(role.name for role in held), resolve(user_id, team_ids, rules)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
