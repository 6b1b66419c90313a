"""Business-hours calendars and the arithmetic of business time.

A calendar has a time zone, weekly hours (several wall-clock intervals per
weekday) and holidays. Business time is real elapsed time inside those hours,
so a 09:00-17:00 day is eight hours even on the day clocks change, and one
that spans the change at 02:00 is seven or nine.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import FieldError, NotFound
from app.sla.tables import BusinessCalendar

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
# A calendar whose hours are all on holidays for this long has no business
# time left to find; stop rather than loop forever.
MAX_SEARCH_DAYS = 3660
TIME_PATTERN = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")

# Seven tuples, Monday first, of (start, end) minutes after local midnight.
WeeklyHours = tuple[tuple[tuple[int, int], ...], ...]


@dataclass(frozen=True)
class Calendar:
    """Business hours in one time zone.

    ``hours[weekday]`` lists (start, end) minutes after local midnight,
    Monday first, sorted and not overlapping, with ``end`` at most 1440.
    """

    time_zone: ZoneInfo
    hours: WeeklyHours
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise FieldError("hours", len(self.hours), "must list seven weekdays")
        for weekday, intervals in enumerate(self.hours):
            check_intervals(WEEKDAYS[weekday], intervals)

    @property
    def has_hours(self) -> bool:
        return any(self.hours)


def check_intervals(weekday: str, intervals: Sequence[tuple[int, int]]) -> None:
    previous_end = 0
    for start, end in intervals:
        if not 0 <= start < end <= MINUTES_PER_DAY:
            shown = f"{format_minutes(start)}-{format_minutes(end)}"
            raise FieldError("hours", shown, f"on {weekday} is not a valid interval")
        if start < previous_end:
            raise FieldError(
                "hours",
                format_minutes(start),
                f"on {weekday} overlaps the interval before",
            )
        previous_end = end


def parse_time(text: str) -> int:
    """Parse "HH:MM" (00:00 to 24:00) into minutes after midnight."""
    match = TIME_PATTERN.match(text.strip())
    if match is None:
        raise FieldError("hours", text, "is not a time of the form HH:MM")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > MINUTES_PER_DAY:
        raise FieldError("hours", text, "is later than 24:00")
    return minutes


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise FieldError("time_zone", name, "is not a known IANA time zone") from error


def hours_from_json(stored: Sequence[Sequence[Sequence[str]]]) -> WeeklyHours:
    """Convert stored hours (seven lists of ["HH:MM", "HH:MM"]) to minutes."""
    if len(stored) != 7:
        raise FieldError("hours", len(stored), "must list seven weekdays")
    return tuple(
        tuple(sorted((parse_time(start), parse_time(end)) for start, end in day))
        for day in stored
    )


def hours_to_json(hours: Sequence[Sequence[tuple[int, int]]]) -> list[list[list[str]]]:
    return [
        [[format_minutes(start), format_minutes(end)] for start, end in day]
        for day in hours
    ]


def parse_hours_text(text: str) -> WeeklyHours:
    """Parse one line per weekday, such as ``mon 09:00-12:00, 13:00-17:00``.

    A weekday left out has no business hours.
    """
    days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, _, rest = line.partition(" ")
        weekday = name.strip().lower()[:3]
        if weekday not in WEEKDAYS:
            raise FieldError("hours", name, "is not a weekday (mon to sun)")
        for part in rest.split(","):
            if not part.strip():
                continue
            start, dash, end = part.partition("-")
            if not dash:
                raise FieldError(
                    "hours", part.strip(), "is not an interval HH:MM-HH:MM"
                )
            days[WEEKDAYS.index(weekday)].append((parse_time(start), parse_time(end)))
    hours = tuple(tuple(sorted(day)) for day in days)
    for index, intervals in enumerate(hours):
        check_intervals(WEEKDAYS[index], intervals)
    return hours


def format_hours_text(hours: Sequence[Sequence[tuple[int, int]]]) -> str:
    lines = []
    for weekday, intervals in enumerate(hours):
        if intervals:
            shown = ", ".join(
                f"{format_minutes(start)}-{format_minutes(end)}"
                for start, end in intervals
            )
            lines.append(f"{WEEKDAYS[weekday]} {shown}")
    return "\n".join(lines)


def parse_holidays_text(text: str) -> frozenset[dt.date]:
    """Parse dates (YYYY-MM-DD) separated by commas or new lines."""
    holidays = set()
    for part in re.split(r"[\s,]+", text):
        if not part:
            continue
        try:
            holidays.add(dt.date.fromisoformat(part))
        except ValueError as error:
            raise FieldError("holidays", part, "is not a date YYYY-MM-DD") from error
    return frozenset(holidays)


def require_aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise FieldError(name, value.isoformat(), "has no time zone")
    return value.astimezone(dt.UTC)


def wall_time_to_utc(day: dt.date, minutes: int, zone: ZoneInfo) -> dt.datetime:
    """Return the instant the clocks of ``zone`` show ``minutes`` past midnight.

    A wall time that is skipped when clocks go forward maps to the instant
    that many minutes after the skipped hour began, and one that repeats when
    they go back maps to its first occurrence (``fold=0``).
    """
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    # Adding to an aware datetime moves its wall clock, not real time.
    return (midnight + dt.timedelta(minutes=minutes)).astimezone(dt.UTC)


def business_intervals(
    calendar: Calendar, first_day: dt.date
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Yield business intervals in UTC, day by day from ``first_day`` on."""
    for offset in range(MAX_SEARCH_DAYS):
        day = first_day + dt.timedelta(days=offset)
        if day in calendar.holidays:
            continue
        for start, end in calendar.hours[day.weekday()]:
            opens = wall_time_to_utc(day, start, calendar.time_zone)
            closes = wall_time_to_utc(day, end, calendar.time_zone)
            if opens < closes:
                yield opens, closes


def add_business_duration(
    calendar: Calendar, start: dt.datetime, duration: dt.timedelta
) -> dt.datetime:
    """Return the instant ``duration`` of business time after ``start``, in UTC.

    A zero duration returns ``start`` itself. When the business time runs
    out exactly at the end of an interval, the result is that end rather
    than the next opening. Raises FieldError for a naive ``start``, a
    negative duration, or a calendar without business hours.
    """
    start = require_aware("start", start)
    if duration < dt.timedelta(0):
        raise FieldError("duration", str(duration), "is negative")
    if duration == dt.timedelta(0):
        return start
    if not calendar.has_hours:
        raise FieldError("hours", "", "are empty, so no business time can pass")

    remaining = duration
    local_day = start.astimezone(calendar.time_zone).date()
    # An interval of the previous day cannot reach into this one, because
    # intervals end by midnight, so the search starts on the local day.
    for opens, closes in business_intervals(calendar, local_day):
        if closes <= start:
            continue
        begin = max(opens, start)
        available = closes - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise FieldError(
        "holidays", "", f"leave no business hours within {MAX_SEARCH_DAYS} days"
    )


def business_time_between(
    calendar: Calendar, start: dt.datetime, end: dt.datetime
) -> dt.timedelta:
    """Return the business time from ``start`` to ``end``; zero if end is not later."""
    start = require_aware("start", start)
    end = require_aware("end", end)
    total = dt.timedelta(0)
    if end <= start:
        return total

    first_day = start.astimezone(calendar.time_zone).date()
    last_day = end.astimezone(calendar.time_zone).date()
    days = (last_day - first_day).days + 1
    for day_offset in range(days):
        day = first_day + dt.timedelta(days=day_offset)
        if day in calendar.holidays:
            continue
        for start_minute, end_minute in calendar.hours[day.weekday()]:
            opens = wall_time_to_utc(day, start_minute, calendar.time_zone)
            closes = wall_time_to_utc(day, end_minute, calendar.time_zone)
            overlap = min(closes, end) - max(opens, start)
            if overlap > dt.timedelta(0):
                total += overlap
    return total


def calendar_from_row(row: dict[str, Any]) -> Calendar:
    """Build a Calendar from a stored ``sla_calendar`` row."""
    return Calendar(
        time_zone=parse_time_zone(row["time_zone"]),
        hours=hours_from_json(row["hours"]),
        holidays=frozenset(row["holidays"] or ()),
    )


async def load_calendar(calendar_id: int) -> Calendar:
    """Load a stored calendar; raises NotFound for an unknown id."""
    row = (
        await BusinessCalendar.select()
        .where(BusinessCalendar.id == calendar_id)
        .output(load_json=True)
        .first()
    )
    if row is None:
        logger.warning("calendar not found calendar_id=%s", calendar_id)
        raise NotFound("calendar", calendar_id)
    return calendar_from_row(row)


async def add_business_time(
    calendar_id: int, start: dt.datetime, duration: dt.timedelta
) -> dt.datetime:
    """Return the instant ``duration`` of business time after ``start`` in the
    stored calendar ``calendar_id``, in UTC.

    Raises NotFound for an unknown calendar and FieldError as
    ``add_business_duration`` does.
    """
    calendar = await load_calendar(calendar_id)
    return add_business_duration(calendar, start, duration)


async def add_business_time_by_id(
    calendar_id: int, start: dt.datetime, duration: dt.timedelta
) -> dt.datetime:
    """Alias of ``add_business_time`` under the name that says it loads by id."""
    return await add_business_time(calendar_id, start, duration)
