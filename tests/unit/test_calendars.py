import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.errors import FieldError
from app.sla.calendars import (
    Calendar,
    add_business_duration,
    business_time_between,
    format_hours_text,
    parse_holidays_text,
    parse_hours_text,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
HOUR = dt.timedelta(hours=1)


def office(
    zone: ZoneInfo = BERLIN,
    hours: str = "mon 09:00-17:00\ntue 09:00-17:00\nwed 09:00-17:00\n"
    "thu 09:00-17:00\nfri 09:00-17:00",
    holidays: str = "",
) -> Calendar:
    return Calendar(
        time_zone=zone,
        hours=parse_hours_text(hours),
        holidays=parse_holidays_text(holidays),
    )


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


def test_add_within_one_day() -> None:
    due = add_business_duration(office(), berlin(2026, 3, 2, 10, 0), 2 * HOUR)

    assert due == berlin(2026, 3, 2, 12, 0)
    assert due.tzinfo == UTC


def test_add_before_opening_starts_at_opening() -> None:
    due = add_business_duration(office(), berlin(2026, 3, 2, 6, 30), HOUR)

    assert due == berlin(2026, 3, 2, 10, 0)


def test_add_ending_at_close_stays_on_that_day() -> None:
    due = add_business_duration(office(), berlin(2026, 3, 2, 9, 0), 8 * HOUR)

    assert due == berlin(2026, 3, 2, 17, 0)


def test_add_across_weekend() -> None:
    # Friday 15:00 plus 4 hours: 2 on Friday, 2 on Monday.
    due = add_business_duration(office(), berlin(2026, 3, 6, 15, 0), 4 * HOUR)

    assert due == berlin(2026, 3, 9, 11, 0)


def test_add_starting_on_saturday() -> None:
    due = add_business_duration(office(), berlin(2026, 3, 7, 12, 0), HOUR)

    assert due == berlin(2026, 3, 9, 10, 0)


def test_add_skips_holiday() -> None:
    calendar = office(holidays="2026-12-24, 2026-12-25")

    # Wednesday 23 December 16:00 plus 2 hours: 1 hour that day, then
    # Thursday and Friday are holidays, the weekend is closed, so Monday.
    due = add_business_duration(calendar, berlin(2026, 12, 23, 16, 0), 2 * HOUR)

    assert due == berlin(2026, 12, 28, 10, 0)


def test_add_with_split_day() -> None:
    calendar = office(hours="mon 09:00-12:00, 13:00-17:00")

    due = add_business_duration(calendar, berlin(2026, 3, 2, 11, 0), 2 * HOUR)

    assert due == berlin(2026, 3, 2, 14, 0)


def test_add_over_spring_forward_night() -> None:
    # Clocks in Berlin go from 02:00 to 03:00 on Sunday 29 March 2026.
    calendar = office(hours="sun 00:00-24:00\nmon 00:00-24:00")
    start = berlin(2026, 3, 29, 0, 0)

    due = add_business_duration(calendar, start, 24 * HOUR)

    # Sunday has only 23 hours, so one hour of Monday is needed.
    assert due == berlin(2026, 3, 30, 1, 0)
    assert business_time_between(calendar, start, berlin(2026, 3, 30, 0, 0)) == (
        23 * HOUR
    )


def test_add_over_fall_back_night() -> None:
    # Clocks in Berlin go from 03:00 back to 02:00 on Sunday 25 October 2026.
    calendar = office(hours="sun 00:00-24:00")
    start = berlin(2026, 10, 25, 0, 0)

    assert business_time_between(calendar, start, berlin(2026, 10, 26, 0, 0)) == (
        25 * HOUR
    )
    due = add_business_duration(calendar, start, 24 * HOUR)
    assert due == dt.datetime(2026, 10, 25, 22, 0, tzinfo=UTC)


def test_office_day_after_dst_change_keeps_eight_hours() -> None:
    calendar = office(zone=NEW_YORK)
    # New York moves to daylight time on Sunday 8 March 2026.
    friday = dt.datetime(2026, 3, 6, 9, 0, tzinfo=NEW_YORK)
    monday = dt.datetime(2026, 3, 9, 9, 0, tzinfo=NEW_YORK)

    assert add_business_duration(calendar, friday, 8 * HOUR) == friday.replace(hour=17)
    assert add_business_duration(calendar, friday, 9 * HOUR) == monday.replace(hour=10)
    # Monday 09:00 is 13:00 UTC now, not 14:00 as on Friday.
    assert monday.astimezone(UTC).hour == 13
    assert business_time_between(calendar, friday, monday.replace(hour=10)) == (
        9 * HOUR
    )


def test_hours_spanning_clock_change_count_real_time() -> None:
    calendar = office(hours="sun 01:00-04:00")

    spring = business_time_between(
        calendar, berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0)
    )
    autumn = business_time_between(
        calendar, berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0)
    )

    assert spring == 2 * HOUR
    assert autumn == 4 * HOUR


def test_between_across_weekend_and_holiday() -> None:
    calendar = office(holidays="2026-03-09")

    # Friday 16:00 to Tuesday 10:00, Monday a holiday: 1 + 1 hours.
    elapsed = business_time_between(
        calendar, berlin(2026, 3, 6, 16, 0), berlin(2026, 3, 10, 10, 0)
    )

    assert elapsed == 2 * HOUR


def test_between_is_inverse_of_add() -> None:
    calendar = office(holidays="2026-04-03, 2026-04-06")
    start = berlin(2026, 3, 27, 13, 17)

    for hours in (1, 5, 17, 40, 100):
        due = add_business_duration(calendar, start, hours * HOUR)
        assert business_time_between(calendar, start, due) == hours * HOUR


def test_between_end_before_start_is_zero() -> None:
    elapsed = business_time_between(
        office(), berlin(2026, 3, 3, 12, 0), berlin(2026, 3, 2, 12, 0)
    )

    assert elapsed == dt.timedelta(0)


def test_zero_duration_returns_start() -> None:
    start = berlin(2026, 3, 7, 12, 0)

    assert add_business_duration(office(), start, dt.timedelta(0)) == start


def test_naive_start_rejected() -> None:
    with pytest.raises(FieldError) as raised:
        add_business_duration(office(), dt.datetime(2026, 3, 2, 9, 0), HOUR)

    assert raised.value.field == "start"


def test_negative_duration_rejected() -> None:
    with pytest.raises(FieldError) as raised:
        add_business_duration(office(), berlin(2026, 3, 2, 9, 0), -HOUR)

    assert raised.value.field == "duration"


def test_calendar_without_hours_rejected() -> None:
    calendar = office(hours="")

    with pytest.raises(FieldError) as raised:
        add_business_duration(calendar, berlin(2026, 3, 2, 9, 0), HOUR)

    assert raised.value.field == "hours"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mon 09:00-08:00", "09:00-08:00"),
        ("mon 09:00-12:00, 11:00-13:00", "11:00"),
        ("mon 9-12", "9"),
        ("someday 09:00-12:00", "someday"),
        ("mon 09:00-24:30", "24:30"),
    ],
)
def test_parse_hours_rejects_bad_text(text: str, value: str) -> None:
    with pytest.raises(FieldError) as raised:
        parse_hours_text(text)

    assert raised.value.field == "hours"
    assert raised.value.value == value


def test_hours_text_round_trips() -> None:
    text = "mon 09:00-12:00, 13:00-17:00\nsat 10:00-24:00"

    assert format_hours_text(parse_hours_text(text)) == text


def test_parse_holidays_rejects_bad_date() -> None:
    with pytest.raises(FieldError) as raised:
        parse_holidays_text("2026-12-24, 2026-13-01")

    assert raised.value.field == "holidays"
    assert raised.value.value == "2026-13-01"
