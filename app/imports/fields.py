"""Parse and check the fields of one input row, collecting every invalid value."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from piccolo.columns import Varchar

from app import fields
from app.db import Tracked
from app.errors import FieldError

# Deliberately loose: one "@", no spaces, a dot in the domain. Mail servers
# do the real check, so this only catches values from the wrong column.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

Parsed = TypeVar("Parsed")


def limit(column: Varchar) -> int:
    """Return the maximum length of a VARCHAR column."""
    if column.length is None:
        raise TypeError(f"{column._meta.name} has no maximum length")
    return column.length


def key_limit(prefix: str) -> int:
    """Return the longest source id that fits ``external_key`` after ``prefix``."""
    return limit(Tracked.external_key) - len(prefix)


def midnight(day: date | None) -> datetime | None:
    """Return the start of ``day`` in UTC, for timestamps known only by date."""
    if day is None:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class RowValues:
    """Typed access to one row's fields.

    Each accessor returns the parsed value, or ``None`` (``""`` for text) and
    records a ``(column, value, reason)`` entry in ``errors`` when the field is
    invalid, so one pass over a row reports all of its problems.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.errors: list[tuple[str | None, str | None, str]] = []
        self.nul_columns: set[str] = set()

    def fail(self, column: str | None, reason: str, value: str | None = None) -> None:
        self.errors.append((column, value, reason))

    def raw(self, column: str) -> str:
        """Return the field's text without outer spaces, unchecked.

        A NUL character is always an error, because PostgreSQL text cannot
        hold one.
        """
        value = self.values.get(column)
        if value is None:
            return ""
        text = value.strip() if isinstance(value, str) else str(value)
        if "\x00" in text and column not in self.nul_columns:
            self.nul_columns.add(column)
            self.fail(column, "contains a NUL character", text.replace("\x00", ""))
        return text

    def text(
        self, column: str, *, required: bool = False, max_length: int | None = None
    ) -> str:
        value = self.raw(column)
        if required and not value:
            self.fail(column, "missing value", value)
        elif max_length is not None and len(value) > max_length:
            self.fail(column, f"longer than {max_length} characters", value)
        return value

    def parse_with(
        self,
        column: str,
        parse: Callable[[str, str], Parsed | None],
        *,
        required: bool = False,
    ) -> Parsed | None:
        """Parse the field with one of the parsers of ``app.fields``, which the
        forms and the API use too, so a value means the same everywhere."""
        value = self.raw(column)
        if not value:
            if required:
                self.fail(column, "missing value", value)
            return None
        try:
            return parse(column, value)
        except FieldError as error:
            self.fail(column, error.reason.removeprefix("is "), value)
            return None

    def date(
        self,
        column: str,
        *,
        required: bool = False,
        formats: Mapping[str, str] | None = None,
    ) -> date | None:
        """Parse a date written YYYY-MM-DD, or in ``formats`` (strptime
        pattern -> label)."""

        def parse(name: str, value: str) -> date | None:
            return fields.date(name, value, formats=formats)

        return self.parse_with(column, parse, required=required)

    def timestamp(self, column: str) -> datetime | None:
        """Parse an ISO date, or date and time. A value without a zone is UTC."""
        return self.parse_with(column, parse_timestamp)

    def amount(self, column: str, *, required: bool = False) -> Decimal | None:
        """Parse a money amount as the forms do, such as 1200, 1,200 or 1200.50."""
        return self.parse_with(column, fields.amount, required=required)

    def integer(self, column: str) -> int | None:
        """Parse a count such as employees, as the forms do: 1200 or 1,200."""
        return self.parse_with(column, fields.whole_number)

    def choice(
        self, column: str, mapping: Mapping[str, str], *, default: str | None = None
    ) -> str | None:
        """Map a value through ``mapping``, ignoring case and outer spaces.

        An empty field returns ``default`` when it is given and is an error
        otherwise.
        """
        value = self.raw(column)
        if not value and default is not None:
            return default
        if not value:
            self.fail(column, "missing value", value)
            return None

        folded = {key.casefold(): target for key, target in mapping.items()}
        target = folded.get(value.casefold())
        if target is None:
            expected = ", ".join(mapping)
            self.fail(column, f"unknown value, expected one of {expected}", value)
        return target

    def email(self, column: str, *, required: bool = False) -> str | None:
        """Return the address in lower case, as addresses are compared here."""
        value = self.raw(column)
        if not value:
            if required:
                self.fail(column, "missing value", value)
            return None
        if not EMAIL_PATTERN.fullmatch(value) or len(value) > 254:
            self.fail(column, "invalid email address", value)
            return None
        return value.lower()


def parse_timestamp(name: str, value: str) -> datetime:
    """Parse an ISO date, or date and time, between the years the forms accept.

    A value without a zone is UTC.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(
            name, value, "is not a date in the form YYYY-MM-DD or YYYY-MM-DD HH:MM"
        ) from None
    fields.check_year(name, value, parsed)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
