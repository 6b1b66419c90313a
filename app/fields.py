"""Parsers that turn submitted text into typed values, or raise FieldError."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from app.errors import FieldError


def text(
    name: str, raw: str | None, *, required: bool = False, max_length: int = 300
) -> str:
    value = (raw or "").strip()
    if required and not value:
        raise FieldError(name, raw, "must not be empty")
    if len(value) > max_length:
        raise FieldError(
            name, value[:40] + "…", f"is longer than {max_length} characters"
        )
    return value


def amount(name: str, raw: str | None) -> Decimal | None:
    value = (raw or "").strip().replace(",", "")
    if not value:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise FieldError(name, raw, "is not a number") from None
    if not number.is_finite() or number < 0:
        raise FieldError(name, raw, "must be zero or more")
    if number >= Decimal(10) ** 12:
        raise FieldError(name, raw, "is too large")
    return number.quantize(Decimal("0.01"))


def date(name: str, raw: str | None) -> dt.date | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise FieldError(name, raw, "is not a date in the form YYYY-MM-DD") from None


def reference(name: str, raw: str | None) -> int | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise FieldError(name, raw, "is not a valid id") from None


def choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str:
    value = (raw or "").strip()
    if value not in choices:
        raise FieldError(name, raw, f"must be one of {', '.join(choices)}")
    return value
