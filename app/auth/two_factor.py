"""TOTP two-factor authentication (RFC 6238): enrolment, codes, recovery codes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time

import pyotp
import segno

from app.auth.security_tables import RecoveryCode, TwoFactor
from app.encryption.columns import decrypt_value, encrypt_value
from app.errors import FieldError
from app.events.service import change_set

logger = logging.getLogger(__name__)

ISSUER = "Switchboard"
RECOVERY_CODE_COUNT = 10
# 10 random bytes are 80 bits, written as 16 base32 letters and digits.
RECOVERY_CODE_BYTES = 10
# Codes of the time steps just before and after now are accepted too, for
# clocks that are up to 30 seconds apart.
VALID_WINDOW = 1

REQUIRED_BY_ROLE = """
SELECT EXISTS (
    SELECT 1 FROM user_role ur JOIN role r ON r.id = ur.role_id
    WHERE ur.user_id = {} AND r.require_two_factor
) AS required
"""


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """Render ``uri`` as a QR code in an inline SVG element, without styles."""
    return segno.make(uri, error="m").svg_inline(
        scale=4, title="QR code for your authenticator app"
    )


def matching_step(secret: str, code: str, after_step: int, now: float) -> int | None:
    """Return the time step whose code is ``code``, if later than ``after_step``."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(dt.datetime.fromtimestamp(now, dt.UTC))
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if step > after_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        letters = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode()
        letters = letters.lower()
        codes.append("-".join(letters[i : i + 4] for i in range(0, 16, 4)))
    return codes


def hash_recovery_code(code: str) -> str:
    """Hash a recovery code as typed, ignoring case, spaces and hyphens."""
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


async def is_enrolled(user_id: int) -> bool:
    return await TwoFactor.exists().where(TwoFactor.user == user_id)


async def required_by_role(user_id: int) -> bool:
    """Return whether any role of the user requires two-factor sign-in."""
    rows = await TwoFactor.raw(REQUIRED_BY_ROLE, user_id)
    return bool(rows and rows[0]["required"])


async def unused_recovery_codes(user_id: int) -> int:
    return await RecoveryCode.count().where(
        (RecoveryCode.user == user_id) & RecoveryCode.used_at.is_null()
    )


async def enrol(user_id: int, secret: str, code: str) -> list[str]:
    """Turn on two-factor sign-in with ``secret`` once ``code`` proves the app has it.

    Returns the new recovery codes in plain text; only their hashes are
    stored, so this is the one time they can be shown. Raises FieldError
    for a wrong code or a user who is enrolled already.
    """
    step = matching_step(secret, code, 0, time.time())
    if step is None:
        raise FieldError(
            "code", code, "is not the current code of your authenticator app"
        )
    if await is_enrolled(user_id):
        raise FieldError("code", code, "was not used: two-factor is already on")

    codes = new_recovery_codes()
    async with change_set(actor_id=user_id) as changes:
        await TwoFactor.insert(
            TwoFactor(
                user=user_id,
                secret=encrypt_value(TwoFactor, "secret", secret),
                last_step=step,
            )
        )
        await RecoveryCode.delete().where(RecoveryCode.user == user_id)
        await RecoveryCode.insert(
            *[
                RecoveryCode(user=user_id, code_hash=hash_recovery_code(c))
                for c in codes
            ]
        )
        changes.add(
            "user.two_factor_enabled",
            "user",
            user_id,
            [],
            {"two_factor": [False, True]},
        )
    logger.info("two-factor enabled user_id=%s", user_id)
    return codes


async def verify_totp(user_id: int, code: str) -> bool:
    """Accept a TOTP code once: its time step must be later than the last one used."""
    row = (
        await TwoFactor.select(TwoFactor.secret, TwoFactor.last_step)
        .where(TwoFactor.user == user_id)
        .first()
    )
    if row is None:
        return False
    secret = decrypt_value(TwoFactor, "secret", row["secret"])
    assert secret is not None
    step = matching_step(secret, code, row["last_step"], time.time())
    if step is None:
        return False

    # Two requests with the same code race here; only one moves the step.
    updated = (
        await TwoFactor.update({TwoFactor.last_step: step})
        .where((TwoFactor.user == user_id) & (TwoFactor.last_step < step))
        .returning(TwoFactor.id)
    )
    return bool(updated)


async def use_recovery_code(user_id: int, code: str) -> bool:
    """Mark an unused recovery code of the user used; False if there is none."""
    used = (
        await RecoveryCode.update({RecoveryCode.used_at: dt.datetime.now(dt.UTC)})
        .where(
            (RecoveryCode.user == user_id)
            & (RecoveryCode.code_hash == hash_recovery_code(code))
            & RecoveryCode.used_at.is_null()
        )
        .returning(RecoveryCode.id)
    )
    if used:
        left = await unused_recovery_codes(user_id)
        logger.info("recovery code used user_id=%s left=%d", user_id, left)
    return bool(used)


async def check_code(user_id: int, code: str) -> str | None:
    """Accept a TOTP code or a recovery code; return which kind matched, or None."""
    if await verify_totp(user_id, code):
        return "totp"
    if await use_recovery_code(user_id, code):
        return "recovery"
    return None


async def disable(user_id: int, code: str) -> None:
    """Turn off two-factor sign-in, given a fresh TOTP code or a recovery code.

    Raises FieldError when a role of the user requires two-factor sign-in,
    and for a code that is wrong or used already.
    """
    if await required_by_role(user_id):
        raise FieldError(
            "code", None, "was not used: a role you hold requires two-factor"
        )
    if await check_code(user_id, code) is None:
        raise FieldError("code", None, "is wrong or was used already")

    async with change_set(actor_id=user_id) as changes:
        await TwoFactor.delete().where(TwoFactor.user == user_id)
        await RecoveryCode.delete().where(RecoveryCode.user == user_id)
        changes.add(
            "user.two_factor_disabled",
            "user",
            user_id,
            [],
            {"two_factor": [True, False]},
        )
    logger.info("two-factor disabled user_id=%s", user_id)
