"""A campaign's send time: past times are rejected, a moment ago means now."""

from __future__ import annotations

import datetime as dt

import pytest

from app.campaigns.service import SEND_AT_GRACE, parse_send_at
from app.errors import FieldError

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_send_at_long_past_is_rejected() -> None:
    with pytest.raises(FieldError) as raised:
        parse_send_at("1999-01-01T00:00:00Z", NOW)

    assert raised.value.field == "send_at"
    assert raised.value.value == "1999-01-01T00:00:00Z"


def test_send_at_within_grace_means_now() -> None:
    moment_ago = NOW - SEND_AT_GRACE + dt.timedelta(seconds=1)

    assert parse_send_at(moment_ago.isoformat(), NOW) == NOW


def test_send_at_ahead_is_kept() -> None:
    later = NOW + dt.timedelta(hours=1)

    assert parse_send_at(later.isoformat(), NOW) == later
