"""The webhook retry schedule spans a nominal 24 hours with jitter."""

from __future__ import annotations

import pytest

from app.webhooks.settings import (
    JITTER,
    RETRY_DELAYS,
    RETRY_WINDOW,
    max_attempts,
    retry_delay,
)


def test_schedule_spans_24_hours() -> None:
    assert RETRY_WINDOW == 86_400
    assert sum(RETRY_DELAYS) == RETRY_WINDOW
    assert max_attempts() == 8


def test_schedule_delays_grow() -> None:
    assert list(RETRY_DELAYS) == sorted(RETRY_DELAYS)
    assert RETRY_DELAYS[0] == 5


def test_retry_delay_applies_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_WEBHOOK_RETRY_SCALE", raising=False)
    for failed, nominal in enumerate(RETRY_DELAYS, start=1):
        delays = {retry_delay(failed) for _ in range(50)}
        assert all(d is not None for d in delays)
        assert min(delays) >= nominal * JITTER[0]  # type: ignore[type-var]
        assert max(delays) <= nominal * JITTER[1]  # type: ignore[type-var]
        assert len(delays) > 1, f"no jitter on delay {failed}"


def test_retry_delay_ends_after_last_attempt() -> None:
    assert retry_delay(0) is None
    assert retry_delay(len(RETRY_DELAYS) + 1) is None
