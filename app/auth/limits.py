"""Counting failed attempts in Redis, and locking an account or address for a while.

A subject (an account's email, a client address) gets a counter that starts
at its first failure and expires after the window. The failure that brings
it to the maximum replaces it with a lock that expires after the lockout,
so locks lift by themselves. Checks happen before any password is verified.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from redis.asyncio import Redis

from app.config import SignInSecurity

# KEYS: the counter, the lock. ARGV: window, maximum, lockout (seconds).
# Returns the count, which has reached the maximum when the lock was set.
COUNT_FAILURE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if count >= tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
    redis.call('DEL', KEYS[1])
end
return count
"""


@dataclass(frozen=True)
class Limit:
    """At most ``max_failures`` within ``window`` seconds, then a lock."""

    action: str
    max_failures: int
    window: int
    lockout: int


@dataclass(frozen=True)
class Lockout:
    """A lock in force: what it applies to and the seconds until it lifts."""

    scope: str
    seconds: int

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.seconds / 60))


def sign_in_limits(config: SignInSecurity) -> dict[str, Limit]:
    """The limits of sign-in attempts, per account and per client address."""
    return {
        "account": Limit(
            "signin",
            config.signin_max_failures,
            config.signin_window,
            config.signin_lockout,
        ),
        "address": Limit(
            "signin",
            config.signin_max_address_failures,
            config.signin_window,
            config.signin_lockout,
        ),
    }


def password_reset_limits() -> dict[str, Limit]:
    """Reset mails per email address and per client address, each within an hour."""
    return {
        "account": Limit("reset", 3, 3600, 3600),
        "address": Limit("reset", 20, 3600, 3600),
    }


def account_subject(email: str) -> str:
    """Name an account in Redis keys by a hash, so keys carry no email."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class Limiter:
    def __init__(self, redis: Redis, prefix: str, limits: dict[str, Limit]) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limits = limits

    def keys(self, scope: str, subject: str) -> tuple[str, str]:
        action = self.limits[scope].action
        base = f"{self.prefix}limit:{action}:{scope}:{subject}"
        return f"{base}:failures", f"{base}:lock"

    async def locked(self, subjects: dict[str, str]) -> Lockout | None:
        """Return the lock that applies to any of ``subjects`` (scope -> subject).

        When several apply, the one that lifts last is returned.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope, subject in subjects.items():
                pipe.ttl(self.keys(scope, subject)[1])
            remaining = await pipe.execute()

        found = [
            Lockout(scope, int(seconds))
            for scope, seconds in zip(subjects, remaining, strict=True)
            if seconds is not None and int(seconds) > 0
        ]
        return max(found, key=lambda lock: lock.seconds, default=None)

    async def count(self, subjects: dict[str, str]) -> None:
        """Count one attempt for each subject, locking those that reach the limit."""
        script = self.redis.register_script(COUNT_FAILURE_SCRIPT)
        for scope, subject in subjects.items():
            limit = self.limits[scope]
            await script(
                keys=list(self.keys(scope, subject)),
                args=[limit.window, limit.max_failures, limit.lockout],
            )

    async def clear(self, scope: str, subject: str) -> None:
        """Forget the failures of a subject; a lock in force stays."""
        await self.redis.delete(self.keys(scope, subject)[0])
