"""Parse and check the fields of one input row, collecting every invalid value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from piccolo.columns import Numeric, Varchar

from app.db import Tracked

# Deliberately loose: one "@", no spaces, a dot in the domain. Mail servers
# do the real check, so this only catches values from the wrong column.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A number written with thousands separators, as spreadsheets export it.
GROUPED_NUMBER = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")
INTEGER_MAX = 2**31 - 1


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

    def date(
        self,
        column: str,
        *,
        required: bool = False,
        formats: Mapping[str, str] | None = None,
    ) -> date | None:
        """Parse an ISO date, or one in ``formats`` (strptime pattern -> label)."""
        value = self.raw(column)
        if not value:
            if required:
                self.fail(column, "missing value", value)
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
        for pattern in formats or {}:
            try:
                return datetime.strptime(value, pattern).date()
            except ValueError:
                continue
        expected = " or ".join(["YYYY-MM-DD", *(formats or {}).values()])
        self.fail(column, f"invalid date, expected {expected}", value)
        return None

    def timestamp(self, column: str) -> datetime | None:
        """Parse an ISO date, or date and time. A value without a zone is UTC."""
        value = self.raw(column)
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(column, "invalid date, expected YYYY-MM-DD", value)
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed

    def decimal(
        self, column: str, *, fits: Numeric, required: bool = False
    ) -> Decimal | None:
        """Parse a non-negative plain number that the NUMERIC column ``fits`` holds."""
        value = self.raw(column)
        if not value:
            if required:
                self.fail(column, "missing value", value)
            return None
        plain = value.replace(",", "") if GROUPED_NUMBER.fullmatch(value) else value
        try:
            number = Decimal(plain)
        except InvalidOperation:
            self.fail(column, "not a number", value)
            return None
        if not number.is_finite():
            self.fail(column, "not a number", value)
            return None
        if number < 0:
            self.fail(column, "negative number", value)
            return None

        if fits.digits is None:
            raise TypeError(f"{fits._meta.name} has no precision")
        precision, scale = fits.digits
        number = number.quantize(Decimal(1).scaleb(-scale))
        if number >= Decimal(10) ** (precision - scale):
            self.fail(
                column,
                f"too large, at most {precision - scale} digits "
                "before the decimal point",
                value,
            )
            return None
        return number

    def integer(self, column: str) -> int | None:
        """Parse a non-negative whole number, such as a count of employees,
        with or without thousands separators."""
        value = self.raw(column)
        if not value:
            return None
        plain = value.replace(",", "") if GROUPED_NUMBER.fullmatch(value) else value
        try:
            number = Decimal(plain)
        except InvalidOperation:
            self.fail(column, "not a whole number", value)
            return None
        if not number.is_finite() or number != number.to_integral_value():
            self.fail(column, "not a whole number", value)
            return None
        if not 0 <= number <= INTEGER_MAX:
            self.fail(column, f"out of range, expected 0 to {INTEGER_MAX}", value)
            return None
        return int(number)

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
