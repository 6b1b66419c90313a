"""New passwords: reset by mail with single-use tokens that expire, stored as
hashes, and a signed-in user's own change with their current password."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass

from app.auth.passwords import hash_password, verify_password
from app.auth.security_tables import PasswordReset
from app.auth.service import check_password
from app.auth.tables import User
from app.errors import FieldError
from app.events.service import change_set

logger = logging.getLogger(__name__)

RESET_LIFETIME = dt.timedelta(minutes=30)
TOKEN_BYTES = 32

# Uses a token that is unused and unexpired, in one statement, so two
# requests with the same token cannot both succeed.
USE_TOKEN = """
UPDATE password_reset SET used_at = now()
WHERE token_hash = {} AND used_at IS NULL AND expires_at > now()
RETURNING "user" AS user_id
"""


@dataclass(frozen=True)
class ResetRequest:
    """A new token and the user it was made for; ``token`` goes into the mail."""

    user_id: int
    email: str
    name: str
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_reset(email: str) -> ResetRequest | None:
    """Make a reset token for the active user with this email, or return None."""
    row = (
        await User.select(User.id, User.email, User.name)
        .where((User.email == email.strip().lower()) & (User.active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None

    token = secrets.token_urlsafe(TOKEN_BYTES)
    await PasswordReset.insert(
        PasswordReset(
            user=row["id"],
            token_hash=hash_token(token),
            expires_at=dt.datetime.now(dt.UTC) + RESET_LIFETIME,
        )
    )
    logger.info("password reset requested user_id=%s", row["id"])
    return ResetRequest(
        user_id=row["id"], email=row["email"], name=row["name"], token=token
    )


def reset_mail(request: ResetRequest, public_url: str) -> tuple[str, str]:
    """Return the subject and text of the reset mail."""
    minutes = int(RESET_LIFETIME.total_seconds() // 60)
    link = f"{public_url}/login/reset?token={request.token}"
    text = (
        f"Hello {request.name},\n\n"
        "Someone asked to reset the password of your Switchboard account.\n"
        f"To choose a new password, open this link within {minutes} minutes:\n\n"
        f"{link}\n\n"
        "The link works once. If you did not ask for it, ignore this mail;\n"
        "your password stays as it is.\n"
    )
    return "Reset your Switchboard password", text


async def token_is_valid(token: str) -> bool:
    return await PasswordReset.exists().where(
        (PasswordReset.token_hash == hash_token(token))
        & PasswordReset.used_at.is_null()
        & (PasswordReset.expires_at > dt.datetime.now(dt.UTC))
    )


def check_new_password(password: str, confirmation: str) -> None:
    check_password(password)
    if password != confirmation:
        raise FieldError("confirmation", None, "does not match the new password")


async def reset_password(token: str, password: str, confirmation: str) -> int:
    """Set a new password with a reset token; returns the user's id.

    The token and every other unused token of the user stop working. Raises
    FieldError for a short or unconfirmed password, and for a token that is
    unknown, used or expired. The caller ends the user's sessions.
    """
    check_new_password(password, confirmation)
    password_hash = hash_password(password)

    async with change_set() as changes:
        rows = await PasswordReset.raw(USE_TOKEN, hash_token(token))
        if not rows:
            raise FieldError(
                "token", None, "is invalid, used or expired; ask for a new reset link"
            )
        user_id = rows[0]["user_id"]
        changes.actor_id = user_id
        await User.update(
            {
                User.password_hash: password_hash,
                User.version: User.version + 1,
                User.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where(User.id == user_id)
        await PasswordReset.update(
            {PasswordReset.used_at: dt.datetime.now(dt.UTC)}
        ).where((PasswordReset.user == user_id) & PasswordReset.used_at.is_null())
        changes.add("user.password_reset", "user", user_id, [], {})
    logger.info("password reset user_id=%s", user_id)
    return user_id


async def change_password(
    user_id: int, current: str, password: str, confirmation: str
) -> None:
    """Set a signed-in user's new password after checking their current one.

    Raises FieldError naming ``current_password`` for a wrong current
    password, and ``password`` or ``confirmation`` for a short or unconfirmed
    new one. The caller limits attempts and ends the user's other sessions.
    """
    row = await User.select(User.password_hash).where(User.id == user_id).first()
    # Verified before the new password is checked, so each attempt costs
    # the same and a wrong guess is always reported as such.
    if not verify_password(row["password_hash"] if row else None, current):
        logger.info(
            "password change rejected user_id=%s field=current_password", user_id
        )
        raise FieldError("current_password", None, "is not your current password")
    check_new_password(password, confirmation)
    password_hash = hash_password(password)

    async with change_set(user_id) as changes:
        await User.update(
            {
                User.password_hash: password_hash,
                User.version: User.version + 1,
                User.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where(User.id == user_id)
        changes.add("user.password_changed", "user", user_id, [], {})
    logger.info("password changed user_id=%s", user_id)
