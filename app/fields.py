"""Parsers that turn submitted text into typed values, or raise FieldError."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal

from app.errors import FieldError

# The maximum of a PostgreSQL integer column, such as ids and counts.
MAX_INTEGER = 2**31 - 1
MAX_ID = MAX_INTEGER
# Fits every NUMERIC(14, 2) and NUMERIC(16, 2) column that stores an amount.
MAX_AMOUNT = Decimal("999999999999.99")
# ASCII digits with optional thousands separators. An amount has at most two
# decimals, and the same digits with more decimals get their own message.
# Exponents, signs, spaces and underscores are not accepted, although
# Decimal() reads them.
GROUPED_DIGITS = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
AMOUNT = re.compile(rf"(?:{GROUPED_DIGITS})(?:\.[0-9]{{1,2}})?|\.[0-9]{{1,2}}")
AMOUNT_WITH_MORE_DECIMALS = re.compile(rf"(?:{GROUPED_DIGITS})?\.[0-9]{{3,}}")
WHOLE_NUMBER = re.compile(GROUPED_DIGITS)
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_YEAR, LAST_YEAR = 1900, 2200


def single(name: str, raw: object) -> None:
    """Raise FieldError when a form repeats ``name``, which arrives as a list."""
    if isinstance(raw, list):
        raise FieldError(name, None, "must be given at most once")


def text(
    name: str, raw: str | None, *, required: bool = False, max_length: int = 300
) -> str:
    single(name, raw)
    value = (raw or "").strip()
    if required and not value:
        raise FieldError(name, raw, "must not be empty")
    if "\x00" in value:
        raise FieldError(
            name, value.replace("\x00", "\\0")[:40], "contains a NUL character"
        )
    if len(value) > max_length:
        raise FieldError(
            name, value[:40] + "…", f"is longer than {max_length} characters"
        )
    return value


def amount(name: str, raw: str | None) -> Decimal | None:
    """Parse a money amount, such as 1200, 1,200 or 1200.50, or None for empty."""
    single(name, raw)
    value = (raw or "").strip()
    if not value:
        return None
    unsigned = value.removeprefix("-")
    if unsigned != value and (
        AMOUNT.fullmatch(unsigned) or AMOUNT_WITH_MORE_DECIMALS.fullmatch(unsigned)
    ):
        raise FieldError(name, raw, "must be zero or more")
    if AMOUNT_WITH_MORE_DECIMALS.fullmatch(value):
        raise FieldError(
            name,
            raw,
            "has more than two decimal places, but an amount has at most two, "
            "such as 1200.50",
        )
    if not AMOUNT.fullmatch(value):
        raise FieldError(name, raw, "is not an amount such as 1200, 1,200 or 1200.50")
    # The pattern admits only digits, commas and one dot, which Decimal reads.
    number = Decimal(value.replace(",", ""))
    if number > MAX_AMOUNT:
        raise FieldError(name, raw, f"is larger than {MAX_AMOUNT:,}")
    return number.quantize(Decimal("0.01"))


def whole_number(name: str, raw: str | None) -> int | None:
    """Parse a count such as employees, written 1200 or 1,200, or None for empty."""
    single(name, raw)
    value = (raw or "").strip()
    if not value:
        return None
    if value.startswith("-") and WHOLE_NUMBER.fullmatch(value[1:]):
        raise FieldError(name, raw, "must be zero or more")
    if not WHOLE_NUMBER.fullmatch(value):
        raise FieldError(name, raw, "is not a whole number")
    digits = value.replace(",", "").lstrip("0")
    # Checked before int(), which rejects more than 4,300 digits with a ValueError.
    if len(digits) > len(str(MAX_INTEGER)) or int(digits or "0") > MAX_INTEGER:
        raise FieldError(name, raw, f"must be at most {MAX_INTEGER}")
    return int(digits or "0")


def date(
    name: str, raw: str | None, *, formats: Mapping[str, str] | None = None
) -> dt.date | None:
    """Parse a date written YYYY-MM-DD, or None for empty.

    ``formats`` adds accepted forms, as strptime pattern -> label, for
    sources that write dates another way.
    """
    single(name, raw)
    value = (raw or "").strip()
    if not value:
        return None
    parsed = None
    if ISO_DATE.fullmatch(value):
        parsed = parse_date(value, "%Y-%m-%d")
    for pattern in formats or {}:
        if parsed is None:
            parsed = parse_date(value, pattern)
    if parsed is None:
        expected = " or ".join(["YYYY-MM-DD", *(formats or {}).values()])
        raise FieldError(name, raw, f"is not a date in the form {expected}")
    check_year(name, raw, parsed)
    return parsed


def parse_date(value: str, pattern: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value, pattern).date()
    except ValueError:
        return None


def check_year(name: str, raw: str | None, value: dt.date) -> None:
    """Reject a date or timestamp outside the years that records plausibly have.

    The range also keeps every time zone conversion inside Python's years 1
    to 9999.
    """
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise FieldError(name, raw, f"must be between {FIRST_YEAR} and {LAST_YEAR}")


def reference(name: str, raw: str | int | None) -> int | None:
    """Parse the id of a referenced record; empty means none."""
    single(name, raw)
    value = str(raw).strip() if raw is not None else ""
    if not value:
        return None
    # int() would also take other scripts' digits, such as fullwidth ones.
    if not (value.isascii() and value.isdigit()):
        raise FieldError(name, raw, "is not a valid id")
    number = int(value)
    if not 0 < number <= MAX_ID:
        raise FieldError(name, raw, "is not a valid id")
    return number


def choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str:
    single(name, raw)
    value = (raw or "").strip()
    if value not in choices:
        raise FieldError(name, raw, f"must be one of {', '.join(choices)}")
    return value
