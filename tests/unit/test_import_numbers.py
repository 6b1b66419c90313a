"""Numbers and dates in imported rows, as spreadsheets write them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from app.deals.tables import Deal
from app.imports.fields import RowValues


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2500.50", Decimal("2500.50")),
        ("2,500.50", Decimal("2500.50")),
        ("1,234,567", Decimal("1234567.00")),
    ],
)
def test_decimal_accepts_thousands_separators(text: str, expected: Decimal) -> None:
    row = RowValues({"Value": text})

    assert row.decimal("Value", fits=Deal.amount) == expected
    assert row.errors == []


@pytest.mark.parametrize("text", ["2,50", "25,00.5", "1,2345", "lots"])
def test_decimal_rejects_other_commas(text: str) -> None:
    row = RowValues({"Value": text})

    assert row.decimal("Value", fits=Deal.amount) is None
    assert row.errors == [("Value", text, "not a number")]


@pytest.mark.parametrize(
    ("text", "expected"), [("1200", 1200), ("1,200", 1200), ("12,345,678", 12345678)]
)
def test_integer_accepts_thousands_separators(text: str, expected: int) -> None:
    row = RowValues({"Employees": text})

    assert row.integer("Employees") == expected
    assert row.errors == []


@pytest.mark.parametrize("text", ["1,2", "1,200.5", "many"])
def test_integer_rejects_other_values(text: str) -> None:
    row = RowValues({"Employees": text})

    assert row.integer("Employees") is None
    assert row.errors == [("Employees", text, "not a whole number")]


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
        ("Close", "30/6/2026", "invalid date, expected YYYY-MM-DD or M/D/YYYY")
    ]
    assert iso_only.errors == [
        ("Close", "6/30/2026", "invalid date, expected YYYY-MM-DD")
    ]
