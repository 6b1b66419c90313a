"""Every condition operator, with empty values and values of another type."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from app.workflows.conditions import Facts, evaluate
from app.workflows.schema import Condition, Group

RECORD: dict[str, Any] = {
    "subject": "Printer on fire",
    "priority": "urgent",
    "amount": Decimal("1200.00"),
    "employees": 40,
    "close_date": dt.date(2026, 12, 24),
    "created_at": dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
    "assignee": 7,
    "description": "",
    "team": None,
    "tags": ["vip", "emea"],
}
CHANGES = {"priority": ["medium", "urgent"]}

# (field, operator, value, expected result)
CASES: list[tuple[str, str, Any, bool]] = [
    ("priority", "equals", "urgent", True),
    ("priority", "equals", "URGENT", True),
    ("priority", "equals", "low", False),
    ("team", "equals", None, True),
    ("team", "equals", "", True),
    ("team", "equals", "3", False),
    ("assignee", "equals", "7", True),
    ("assignee", "equals", "seven", False),
    ("amount", "equals", "1,200", True),
    ("priority", "not_equals", "low", True),
    ("priority", "not_equals", "urgent", False),
    ("team", "not_equals", "3", True),
    ("team", "not_equals", "", False),
    ("assignee", "not_equals", "seven", False),
    ("subject", "contains", "fire", True),
    ("subject", "contains", "FIRE", True),
    ("subject", "contains", "water", False),
    ("description", "contains", "fire", False),
    ("team", "contains", "1", False),
    ("amount", "contains", "12", False),
    ("subject", "contains", "", False),
    ("tags", "contains", "vip", True),
    ("tags", "contains", "apac", False),
    ("subject", "starts_with", "printer", True),
    ("subject", "starts_with", "fire", False),
    ("team", "starts_with", "x", False),
    ("employees", "starts_with", "4", False),
    ("amount", "greater", "1000", True),
    ("amount", "greater", "5000", False),
    ("employees", "greater", "39", True),
    ("close_date", "greater", "2026-12-01", True),
    ("close_date", "greater", "not a date", False),
    ("created_at", "greater", "2026-11-30T00:00:00", True),
    ("amount", "greater", "lots", False),
    ("subject", "greater", "a", False),
    ("team", "greater", "1", False),
    ("amount", "greater", "", False),
    ("amount", "greater", "NaN", False),
    ("amount", "less", "-Infinity", False),
    ("amount", "equals", "sNaN", False),
    ("amount", "not_equals", "NaN", False),
    ("amount", "less", "5000", True),
    ("amount", "less", "1000", False),
    ("close_date", "less", "2027-01-01", True),
    ("team", "less", "1", False),
    ("employees", "less", "forty", False),
    ("priority", "in", ["high", "urgent"], True),
    ("priority", "in", "high,urgent", True),
    ("priority", "in", ["low"], False),
    ("assignee", "in", ["7", "8"], True),
    ("assignee", "in", ["x"], False),
    ("team", "in", ["1"], False),
    ("tags", "in", ["emea", "apac"], True),
    ("tags", "in", "apac, emea", True),
    ("tags", "in", "apac,amer", False),
    ("description", "is_empty", None, True),
    ("team", "is_empty", None, True),
    ("tags", "is_empty", None, False),
    ("subject", "is_empty", None, False),
    ("missing_field", "is_empty", None, True),
    ("priority", "changed", None, True),
    ("subject", "changed", None, False),
    ("priority", "changed_to", "urgent", True),
    ("priority", "changed_to", "high", False),
    ("subject", "changed_to", "Printer on fire", False),
    ("team", "changed_to", "1", False),
    ("actor.team", "equals", "5", True),
    ("actor.team", "in", ["4", "6"], False),
    ("actor.role", "equals", "support_agent", True),
    ("actor.role", "not_equals", "admin", True),
    ("actor.role", "greater", "a", False),
]


@pytest.mark.parametrize(("field", "op", "value", "expected"), CASES)
def test_operator(field: str, op: str, value: Any, expected: bool) -> None:
    facts = Facts(RECORD, CHANGES, actor_teams=(5,), actor_roles=("support_agent",))
    group = Group(items=[Condition(field=field, op=op, value=value)])  # type: ignore[arg-type]

    held, outcomes = evaluate(group, facts)

    assert held is expected
    assert outcomes[0].result is expected


def test_type_mismatch_gives_reason() -> None:
    group = Group(items=[Condition(field="amount", op="greater", value="lots")])

    held, outcomes = evaluate(group, Facts(RECORD))

    assert held is False
    assert "not a number" in outcomes[0].reason


def test_nested_any_inside_all() -> None:
    group = Group(
        match="all",
        items=[
            Condition(field="priority", op="equals", value="urgent"),
            Group(
                match="any",
                items=[
                    Condition(field="team", op="equals", value="9"),
                    Condition(field="tags", op="contains", value="vip"),
                ],
            ),
        ],
    )

    held, outcomes = evaluate(group, Facts(RECORD))

    assert held is True
    assert [outcome.path for outcome in outcomes] == [
        "conditions.0",
        "conditions.1.0",
        "conditions.1.1",
    ]
    assert [outcome.result for outcome in outcomes] == [True, False, True]


def test_empty_group_holds() -> None:
    assert evaluate(Group(), Facts(RECORD))[0] is True
    assert evaluate(Group(match="any"), Facts(RECORD))[0] is True
