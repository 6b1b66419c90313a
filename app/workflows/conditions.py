"""Evaluating a rule's condition groups against a record and its change.

A condition on an empty value, or on a value of another type than the
field's, evaluates to False with the reason, and the dry run shows it. The
evaluator turns an operator's Mismatch into that result, so no condition
raises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from app.workflows.schema import Condition, Group


@dataclass
class Facts:
    """The facts conditions see: the record now, the change that triggered the
    rule (``{"field": [before, after]}``), the actor and the trigger's details."""

    record: Mapping[str, Any]
    changes: Mapping[str, Any] = field(default_factory=dict)
    actor_teams: tuple[int, ...] = ()
    actor_roles: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One condition's result, for the dry run: its path, result and reason."""

    path: str
    field: str
    op: str
    value: Any
    actual: Any
    result: bool
    reason: str = ""


class Mismatch(Exception):
    """A condition's value cannot be compared with the field's value."""


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def coerce(expected: Any, actual: Any) -> Any:
    """Convert the condition's ``expected`` to the type of the field's ``actual``.

    Raises Mismatch when the text is not a value of that type.
    """
    if isinstance(actual, bool):
        if isinstance(expected, bool):
            return expected
        text = str(expected).strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise Mismatch(f"{expected!r} is not true or false")
    if isinstance(actual, int | float | Decimal):
        try:
            number = Decimal(str(expected).replace(",", "").strip())
        except InvalidOperation:
            raise Mismatch(f"{expected!r} is not a number") from None
        # Decimal accepts "NaN" and "Infinity", and comparing a NaN raises.
        if not number.is_finite():
            raise Mismatch(f"{expected!r} is not a finite number")
        return number
    if isinstance(actual, dt.datetime):
        try:
            parsed = dt.datetime.fromisoformat(str(expected).strip())
        except ValueError:
            raise Mismatch(f"{expected!r} is not a date and time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if isinstance(actual, dt.date):
        try:
            return dt.date.fromisoformat(str(expected).strip())
        except ValueError:
            raise Mismatch(f"{expected!r} is not a date (YYYY-MM-DD)") from None
    return str(expected)


def comparable(actual: Any) -> Any:
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        return Decimal(str(actual))
    return actual


def same(expected: Any, actual: Any) -> bool:
    if isinstance(actual, str):
        return str(expected).strip().casefold() == actual.strip().casefold()
    return comparable(actual) == coerce(expected, actual)


def field_value(facts: Facts, name: str) -> Any:
    if name == "actor.team":
        return list(facts.actor_teams)
    if name == "actor.role":
        return list(facts.actor_roles)
    if name.startswith("details."):
        return facts.details.get(name.removeprefix("details."))
    return facts.record.get(name)


def compare(condition: Condition, facts: Facts) -> bool:
    """Apply one operator; raises Mismatch for values of different types."""
    op = condition.op
    expected = condition.value
    actual = field_value(facts, condition.field)

    if op == "is_empty":
        return is_empty(actual)
    if op == "changed":
        return condition.field in facts.changes
    if op == "changed_to":
        if condition.field not in facts.changes:
            return False
        return not is_empty(actual) and same(expected, actual)
    if is_empty(expected) and op not in ("equals", "not_equals"):
        raise Mismatch("the condition has no value to compare with")

    if isinstance(actual, list):
        # Lists (tags, the actor's teams and roles) match when an element does.
        if op in ("equals", "contains", "in"):
            options = expected if isinstance(expected, list) else [expected]
            if op == "in" and not isinstance(expected, list):
                # "is one of" takes comma-separated text, as for a single value.
                options = str(expected).split(",")
            return any(same(option, item) for item in actual for option in options)
        if op == "not_equals":
            return not any(same(expected, item) for item in actual)
        raise Mismatch(f"{op} does not apply to a list")

    if op == "equals":
        return (not is_empty(actual) and same(expected, actual)) or (
            is_empty(actual) and is_empty(expected)
        )
    if op == "not_equals":
        if is_empty(actual):
            return not is_empty(expected)
        return not same(expected, actual)
    if is_empty(actual):
        return False
    if op == "in":
        options = expected if isinstance(expected, list) else str(expected).split(",")
        return any(same(option, actual) for option in options)
    if op in ("contains", "starts_with"):
        if not isinstance(actual, str):
            raise Mismatch(f"{op} applies to text, not {type(actual).__name__}")
        needle = str(expected).casefold()
        text = actual.casefold()
        return needle in text if op == "contains" else text.startswith(needle)
    if op in ("greater", "less"):
        if isinstance(actual, str | bool):
            raise Mismatch(f"{op} applies to numbers and dates, not text")
        wanted = coerce(expected, actual)
        value = comparable(actual)
        return value > wanted if op == "greater" else value < wanted
    raise Mismatch(f"unknown operator {op}")


def evaluate(
    group: Group, facts: Facts, path: str = "conditions"
) -> tuple[bool, list[Outcome]]:
    """Return whether ``group`` holds, and each condition's outcome in order.

    Every condition is evaluated, also after the result is known, so the
    dry run can show them all. An empty group holds.
    """
    outcomes: list[Outcome] = []
    results = []
    for index, item in enumerate(group.items):
        item_path = f"{path}.{index}"
        if isinstance(item, Group):
            result, inner = evaluate(item, facts, item_path)
            outcomes.extend(inner)
            results.append(result)
            continue
        reason = ""
        try:
            result = compare(item, facts)
        except Mismatch as error:
            result = False
            reason = str(error)
        outcomes.append(
            Outcome(
                path=item_path,
                field=item.field,
                op=item.op,
                value=item.value,
                actual=field_value(facts, item.field),
                result=result,
                reason=reason,
            )
        )
        results.append(result)
    if not results:
        return True, outcomes
    held = all(results) if group.match == "all" else any(results)
    return held, outcomes
