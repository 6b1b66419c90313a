"""The shared parsers of amounts, counts and dates that forms, the API and
imports all use."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from piccolo.columns import Numeric

from app import fields
from app.accounts.tables import Account
from app.deals.tables import Deal, Product
from app.errors import FieldError

AMOUNT_EXPECTED = "is not an amount such as 1200, 1,200 or 1200.50"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1200", Decimal("1200.00")),
        ("1,200", Decimal("1200.00")),
        ("1,234,567.5", Decimal("1234567.50")),
        (" 1200.50 ", Decimal("1200.50")),
        (".5", Decimal("0.50")),
        ("0", Decimal("0.00")),
        ("999,999,999,999.99", Decimal("999999999999.99")),
    ],
)
def test_amount_accepts_plain_and_grouped(text: str, expected: Decimal) -> None:
    assert fields.amount("amount", text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e30", AMOUNT_EXPECTED),
        ("1e5", AMOUNT_EXPECTED),
        ("NaN", AMOUNT_EXPECTED),
        ("Infinity", AMOUNT_EXPECTED),
        ("-Infinity", AMOUNT_EXPECTED),
        ("sNaN", AMOUNT_EXPECTED),
        ("+5", AMOUNT_EXPECTED),
        ("1_000", AMOUNT_EXPECTED),
        ("1 000", AMOUNT_EXPECTED),
        ("2,50", AMOUNT_EXPECTED),
        ("12.", AMOUNT_EXPECTED),
        ("$100", AMOUNT_EXPECTED),
        # Digits of other scripts, which Decimal() would read.
        ("\uff11\uff12", AMOUNT_EXPECTED),
        ("\u0661\u0662", AMOUNT_EXPECTED),
        ("-100", "must be zero or more"),
        ("-0.001", "must be zero or more"),
        (
            "0.001",
            "has more than two decimal places, but an amount has at most two, "
            "such as 1200.50",
        ),
        ("99999999999999999999", "is larger than 999,999,999,999.99"),
        ("1" * 5000, "is larger than 999,999,999,999.99"),
    ],
)
def test_amount_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(FieldError) as raised:
        fields.amount("amount", text)

    assert raised.value.field == "amount"
    assert raised.value.value == text
    assert raised.value.reason == reason


def test_amount_empty_is_none() -> None:
    assert fields.amount("amount", "  ") is None
    assert fields.amount("amount", None) is None


@pytest.mark.parametrize("column", [Deal.amount, Account.annual_revenue, Product.price])
def test_max_amount_fits_amount_columns(column: Numeric) -> None:
    assert column.digits is not None
    precision, scale = column.digits

    assert scale == 2
    assert fields.MAX_AMOUNT < Decimal(10) ** (precision - scale)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1200", 1200),
        ("1,200", 1200),
        ("0", 0),
        ("0" * 20 + "7", 7),
        ("2147483647", 2**31 - 1),
    ],
)
def test_whole_number_accepts_plain_and_grouped(text: str, expected: int) -> None:
    assert fields.whole_number("employees", text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.5", "is not a whole number"),
        ("1200.0", "is not a whole number"),
        ("1e3", "is not a whole number"),
        ("1,2", "is not a whole number"),
        ("NaN", "is not a whole number"),
        ("-3", "must be zero or more"),
        ("2147483648", "must be at most 2147483647"),
        # int() rejects more than 4,300 digits with a ValueError of its own.
        ("9" * 5000, "must be at most 2147483647"),
    ],
)
def test_whole_number_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(FieldError) as raised:
        fields.whole_number("employees", text)

    assert raised.value.reason == reason


US_DATES = {"%m/%d/%Y": "M/D/YYYY"}


@pytest.mark.parametrize(
    ("text", "formats", "expected"),
    [
        ("2026-06-30", None, dt.date(2026, 6, 30)),
        ("2026-06-30", US_DATES, dt.date(2026, 6, 30)),
        ("6/30/2026", US_DATES, dt.date(2026, 6, 30)),
    ],
)
def test_date_accepts_iso_and_extra_formats(
    text: str, formats: dict[str, str] | None, expected: dt.date
) -> None:
    assert fields.date("close_date", text, formats=formats) == expected


@pytest.mark.parametrize(
    ("text", "formats", "reason"),
    [
        ("20260630", None, "is not a date in the form YYYY-MM-DD"),
        ("2026-W01-1", None, "is not a date in the form YYYY-MM-DD"),
        ("2026-02-30", None, "is not a date in the form YYYY-MM-DD"),
        ("6/30/2026", None, "is not a date in the form YYYY-MM-DD"),
        ("30/6/2026", US_DATES, "is not a date in the form YYYY-MM-DD or M/D/YYYY"),
        ("0001-01-01", None, "must be between 1900 and 2200"),
        ("9999-12-31", None, "must be between 1900 and 2200"),
        ("1/1/1850", US_DATES, "must be between 1900 and 2200"),
    ],
)
def test_date_rejects_with_reason(
    text: str, formats: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(FieldError) as raised:
        fields.date("close_date", text, formats=formats)

    assert raised.value.reason == reason


@pytest.mark.parametrize(
    "parse",
    [
        fields.text,
        fields.amount,
        fields.whole_number,
        fields.date,
        fields.reference,
        lambda name, raw: fields.choice(name, raw, ("low", "high")),
    ],
)
def test_repeated_form_field_rejected(parse) -> None:
    """A form that repeats a field sends a list, which no parser takes."""
    with pytest.raises(FieldError) as raised:
        parse("priority", ["low", "high"])

    assert raised.value.message == "Priority must be given at most once."
