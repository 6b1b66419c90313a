"""Parsing CRM_CLOCK_START, the start time of a process's clock in tests."""

import datetime as dt

import pytest

from app.config import ConfigError
from app.time_travel import parse_start


def test_parse_start_reads_zoned_time() -> None:
    start = parse_start(" 2027-01-04T09:00:00+01:00 ")

    assert start == dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("next monday", "is not an ISO 8601 time"), ("2027-01-04T09:00", "no time zone")],
)
def test_parse_start_rejects_invalid(raw: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_start(raw)

    assert "CRM_CLOCK_START" in str(caught.value)
    assert reason in str(caught.value)
    assert raw in str(caught.value)
