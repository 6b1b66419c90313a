"""Parsers that turn submitted text into typed values, or raise FieldError."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from app.errors import FieldError

# Ids are PostgreSQL integers.
MAX_ID = 2**31 - 1
MAX_AMOUNT = Decimal("999999999999.99")
# Digits with optional thousands separators, and at most two decimals.
AMOUNT = re.compile(r"\d{1,3}(,\d{3})+(\.\d{1,2})?|\d+(\.\d{1,2})?|\.\d{1,2}")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FIRST_YEAR, LAST_YEAR = 1900, 2200


def text(
    name: str, raw: str | None, *, required: bool = False, max_length: int = 300
) -> str:
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
    value = (raw or "").strip()
    if not value:
        return None
    if not AMOUNT.fullmatch(value):
        raise FieldError(name, raw, "is not an amount such as 1200, 1,200 or 1200.50")
    try:
        number = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise FieldError(name, raw, "is not a number") from None
    if number > MAX_AMOUNT:
        raise FieldError(name, raw, f"is larger than {MAX_AMOUNT:,}")
    return number.quantize(Decimal("0.01"))


def date(name: str, raw: str | None) -> dt.date | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        if not ISO_DATE.fullmatch(value):
            raise ValueError(value)
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise FieldError(name, raw, "is not a date in the form YYYY-MM-DD") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise FieldError(name, raw, f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return parsed


def reference(name: str, raw: str | int | None) -> int | None:
    """Parse the id of a referenced record; empty means none."""
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
    value = (raw or "").strip()
    if value not in choices:
        raise FieldError(name, raw, f"must be one of {', '.join(choices)}")
    return value
