"""Delivery settings of webhooks and other outbox messages, read from the
environment on each use so that tests can change them per process."""

from __future__ import annotations

import os
import random

# Seconds to wait after failed attempt 1, 2, ... before the next: 5 s,
# 5 min, 30 min, 2 h, 4 h, 8 h, and a last delay of about 9.4 h that makes
# the eight attempts span RETRY_WINDOW (24 hours) before jitter.
RETRY_WINDOW = 24 * 3600
GROWING_DELAYS = (5, 300, 1800, 7200, 14400, 28800)
RETRY_DELAYS = (*GROWING_DELAYS, RETRY_WINDOW - sum(GROWING_DELAYS))
# Each delay is multiplied by a random factor in this range, so endpoints
# that failed together are not retried together.
JITTER = (0.8, 1.2)
RESPONSE_EXCERPT = 500


def float_variable(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise ValueError(f"{name}={raw!r} is not a number") from error
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be more than 0")
    return value


def retry_scale() -> float:
    """CRM_WEBHOOK_RETRY_SCALE: the factor on every retry delay (tests: 0.0002)."""
    return float_variable("CRM_WEBHOOK_RETRY_SCALE", 1.0)


def attempt_timeout() -> float:
    """CRM_WEBHOOK_TIMEOUT: seconds one attempt may take, connecting included."""
    return float_variable("CRM_WEBHOOK_TIMEOUT", 10.0)


def disable_after() -> int:
    """CRM_WEBHOOK_DISABLE_AFTER: failed messages in a row that disable an endpoint."""
    return max(1, int(float_variable("CRM_WEBHOOK_DISABLE_AFTER", 5)))


def max_attempts() -> int:
    return len(RETRY_DELAYS) + 1


def retry_delay(failed_attempts: int) -> float | None:
    """Return seconds until the next attempt after ``failed_attempts`` failures,
    or None when the message has had all its attempts."""
    if failed_attempts < 1 or failed_attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[failed_attempts - 1] * retry_scale() * random.uniform(*JITTER)
