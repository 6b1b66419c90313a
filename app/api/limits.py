"""Per-key rate limits in Redis: a fixed window, counted with INCR.

Each key gets one counter per window, named by the window's start, that
expires with the window. The headers are those of the IETF draft
"RateLimit Fields for HTTP" (draft-ietf-httpapi-ratelimit-headers)
revisions 00 to 06: RateLimit-Limit, RateLimit-Remaining and
RateLimit-Reset in seconds, not the RateLimit and RateLimit-Policy fields
of revision 07 and later. A request over the limit gets 429 with
Retry-After, equal to RateLimit-Reset.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

DEFAULT_REQUESTS = 600
DEFAULT_WINDOW = 60

# KEYS: the window's counter. ARGV: the window in seconds. Returns the count.
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per key in each window of ``window`` seconds."""

    requests: int = DEFAULT_REQUESTS
    window: int = DEFAULT_WINDOW

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimit:
        """Read API_RATE_LIMIT (requests per window) and API_RATE_WINDOW (seconds).

        Raises ValueError naming the variable for anything but a whole
        number of 1 or more.
        """
        values = os.environ if env is None else env
        return cls(
            requests=positive(values, "API_RATE_LIMIT", DEFAULT_REQUESTS),
            window=positive(values, "API_RATE_WINDOW", DEFAULT_WINDOW),
        )


@dataclass(frozen=True)
class Usage:
    """A request's place in its window, as the response headers report it."""

    limit: int
    remaining: int
    reset: int

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        headers = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(max(self.remaining, 0)),
            "ratelimit-reset": str(self.reset),
        }
        if self.exceeded:
            headers["retry-after"] = str(self.reset)
        return headers


def positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} must be a whole number of 1 or more")
    return int(raw)


async def count_request(
    redis: Redis, prefix: str, key_id: int, limit: RateLimit, now: float
) -> Usage:
    """Count one request of the key and return its usage of the window."""
    window_start = math.floor(now / limit.window) * limit.window
    counter = f"{prefix}api-rate:{key_id}:{window_start}"
    script = redis.register_script(COUNT_SCRIPT)
    count = int(await script(keys=[counter], args=[limit.window]))
    reset = max(1, math.ceil(window_start + limit.window - now))
    return Usage(limit=limit.requests, remaining=limit.requests - count, reset=reset)
