"""Tables of sign-in security: two-factor secrets, recovery codes, reset tokens."""

from __future__ import annotations

from piccolo.columns import BigInt, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import User
from app.encryption.columns import EncryptedText


class TwoFactor(Table, tablename="two_factor"):
    """A user's confirmed TOTP enrolment (RFC 6238), one row per user."""

    id: Serial
    user = ForeignKey(User, null=False, unique=True, on_delete=OnDelete.cascade)
    # The base32 secret, AES-GCM encrypted like other sensitive columns.
    secret = EncryptedText(length=64)
    # The last 30-second time step a code was accepted for; codes of that
    # step and earlier are rejected, so a code works only once.
    last_step = BigInt(default=0)
    enabled_at = Timestamptz(default=TimestamptzNow())


class RecoveryCode(Table, tablename="recovery_code"):
    """A single-use code that replaces a TOTP code, stored as its SHA-256."""

    id: Serial
    user = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    code_hash = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    used_at = Timestamptz(null=True, default=None)


class PasswordReset(Table, tablename="password_reset"):
    """A password reset token sent by mail, stored as its SHA-256."""

    id: Serial
    user = ForeignKey(User, null=False, on_delete=OnDelete.cascade)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
