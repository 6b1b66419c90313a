"""Numbers and dates in imported rows, as spreadsheets write them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.imports.fields import RowValues

AMOUNT_EXPECTED = "not an amount such as 1200, 1,200 or 1200.50"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2500.50", Decimal("2500.50")),
        ("2,500.50", Decimal("2500.50")),
        ("1,234,567", Decimal("1234567.00")),
    ],
)
def test_amount_accepts_thousands_separators(text: str, expected: Decimal) -> None:
    row = RowValues({"Value": text})

    assert row.amount("Value") == expected
    assert row.errors == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2,50", AMOUNT_EXPECTED),
        ("25,00.5", AMOUNT_EXPECTED),
        ("lots", AMOUNT_EXPECTED),
        ("1e30", AMOUNT_EXPECTED),
        ("1e5", AMOUNT_EXPECTED),
        ("NaN", AMOUNT_EXPECTED),
        ("Infinity", AMOUNT_EXPECTED),
        ("-100", "must be zero or more"),
        ("99999999999999999999", "larger than 999,999,999,999.99"),
        (
            "0.001",
            "has more than two decimal places, but an amount has at most two, "
            "such as 1200.50",
        ),
    ],
)
def test_amount_rejects_row_as_forms_do(text: str, reason: str) -> None:
    row = RowValues({"Value": text})

    assert row.amount("Value") is None
    assert row.errors == [("Value", text, reason)]


def test_amount_required_when_empty() -> None:
    row = RowValues({"Value": " "})

    assert row.amount("Value", required=True) is None
    assert row.errors == [("Value", "", "missing value")]


@pytest.mark.parametrize(
    ("text", "expected"), [("1200", 1200), ("1,200", 1200), ("12,345,678", 12345678)]
)
def test_integer_accepts_thousands_separators(text: str, expected: int) -> None:
    row = RowValues({"Employees": text})

    assert row.integer("Employees") == expected
    assert row.errors == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1,2", "not a whole number"),
        ("1,200.5", "not a whole number"),
        ("many", "not a whole number"),
        ("1e3", "not a whole number"),
        ("-5", "must be zero or more"),
        ("9" * 5000, "must be at most 2147483647"),
    ],
)
def test_integer_rejects_other_values(text: str, reason: str) -> None:
    row = RowValues({"Employees": text})

    assert row.integer("Employees") is None
    assert row.errors == [("Employees", text, reason)]


US_DATES = {"%m/%d/%Y": "M/D/YYYY"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-06-30", date(2026, 6, 30)), ("6/30/2026", date(2026, 6, 30))],
)
def test_date_accepts_extra_formats(text: str, expected: date) -> None:
    row = RowValues({"Close": text})

    assert row.date("Close", formats=US_DATES) == expected
    assert row.errors == []


def test_date_error_names_accepted_formats() -> None:
    row = RowValues({"Close": "30/6/2026"})
    iso_only = RowValues({"Close": "6/30/2026"})

    assert row.date("Close", formats=US_DATES) is None
    assert iso_only.date("Close") is None
    assert row.errors == [
        ("Close", "30/6/2026", "not a date in the form YYYY-MM-DD or M/D/YYYY")
    ]
    assert iso_only.errors == [
        ("Close", "6/30/2026", "not a date in the form YYYY-MM-DD")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", datetime(2024, 1, 2, tzinfo=UTC)),
        ("2024-01-02 10:30", datetime(2024, 1, 2, 10, 30, tzinfo=UTC)),
        ("2024-01-02T10:30:00+02:00", datetime(2024, 1, 2, 8, 30, tzinfo=UTC)),
    ],
)
def test_timestamp_reads_iso_in_utc(text: str, expected: datetime) -> None:
    row = RowValues({"Created": text})

    assert row.timestamp("Created") == expected
    assert row.errors == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("yesterday", "not a date in the form YYYY-MM-DD or YYYY-MM-DD HH:MM"),
        # Converting either to UTC would leave Python's years 1 to 9999.
        ("0001-01-01T00:00+14:00", "must be between 1900 and 2200"),
        ("9999-12-31T23:59-14:00", "must be between 1900 and 2200"),
    ],
)
def test_timestamp_rejects_row(text: str, reason: str) -> None:
    row = RowValues({"Created": text})

    assert row.timestamp("Created") is None
    assert row.errors == [("Created", text, reason)]


NASTY_VALUES = [
    "1e30",
    "1e999999999",
    "-1e-999999999",
    "NaN",
    "sNaN",
    "-Infinity",
    "9" * 5000,
    "0x10",
    "\x00",
    "\uff11",
    "9999-99-99",
    "0000-01-01",
    "0001-01-01T00:00+14:00",
    "2026-01-01T25:00",
]
ACCESSORS: dict[str, Callable[[RowValues], Any]] = {
    "amount": lambda row: row.amount("Value"),
    "integer": lambda row: row.integer("Value"),
    "date": lambda row: row.date("Value", formats={"%m/%d/%Y": "M/D/YYYY"}),
    "timestamp": lambda row: row.timestamp("Value"),
}


@pytest.mark.parametrize("accessor", sorted(ACCESSORS))
@pytest.mark.parametrize("text", NASTY_VALUES)
def test_bad_value_fails_row_only(accessor: str, text: str) -> None:
    row = RowValues({"Value": text})

    assert ACCESSORS[accessor](row) is None
    assert row.errors != []
    assert {column for column, _, _ in row.errors} == {"Value"}
