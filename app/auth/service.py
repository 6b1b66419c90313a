"""Creating users and checking sign-ins."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, cast

import msgspec
from piccolo.columns import Column

from app.auth.passwords import hash_password, verify_password
from app.auth.tables import ROLES, User
from app.errors import FieldError

logger = logging.getLogger(__name__)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


class CurrentUser(msgspec.Struct, frozen=True):
    """The signed-in user, as every request and socket receives it."""

    id: int
    email: str
    name: str
    role: str


def check_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise FieldError("email", email, "is not a valid email address")
    return email


async def create_user(email: str, name: str, role: str, password: str) -> CurrentUser:
    """Create a user, or set the name, role and password of an existing one."""
    email = check_email(email)
    if role not in ROLES:
        raise FieldError("role", role, f"must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise FieldError("name", name, "must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise FieldError(
            "password", "(hidden)", f"must be at least {MIN_PASSWORD_LENGTH} characters"
        )

    values: dict[Column | str, Any] = {
        User.name: name.strip(),
        User.role: role,
        User.password_hash: hash_password(password),
        User.active: True,
    }
    existing = await User.select(User.id).where(User.email == email).first()
    if existing:
        values[User.version] = User.version + 1
        values[User.updated_at] = now()
        await User.update(values).where(User.id == existing["id"])
        user_id = existing["id"]
    else:
        values[User.email] = email
        rows = await User.insert(User(cast("dict[Column, Any]", values))).returning(
            User.id
        )
        user_id = rows[0]["id"]

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
    row = (
        await User.select(User.id, User.email, User.name, User.role)
        .where((User.id == user_id) & (User.active == True))  # noqa: E712
        .first()
    )
    return CurrentUser(**row) if row else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
