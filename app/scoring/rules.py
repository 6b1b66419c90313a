"""The rule-based part of lead scores: points that decay with a half-life."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.scoring.features import lead_features

# Lead columns a field rule may test besides the answers to questions.
LEAD_FIELDS = ("source", "status", "company", "email")


@dataclass(frozen=True)
class Rule:
    kind: str
    field: str
    value: str
    points: int
    half_life_days: float | None = None

    def describe(self) -> str:
        if self.kind == "activity":
            return f"Each {self.field.replace('_', ' ')} activity"
        if self.value == "":
            return f"{self.field} is answered"
        return f"{self.field} is {self.value}"


@dataclass(frozen=True)
class RulePoints:
    text: str
    points: float


def decay(points: float, age: dt.timedelta, half_life_days: float | None) -> float:
    """Return ``points`` halved once per ``half_life_days`` of ``age``."""
    if not half_life_days:
        return float(points)
    days = max(age.total_seconds(), 0.0) / 86400
    return points * 0.5 ** (days / half_life_days)


def field_value(lead: Mapping[str, Any], field: str) -> str | None:
    if field in LEAD_FIELDS:
        value = lead.get(field)
        return str(value) if value not in (None, "") else None
    return lead_features(lead).get(field)


def matches(rule: Rule, lead: Mapping[str, Any]) -> bool:
    """A field rule with an empty value matches any answer; otherwise the
    value must be equal, ignoring case and surrounding spaces."""
    value = field_value(lead, rule.field)
    if value is None:
        return False
    if rule.value == "":
        return True
    return value.strip().casefold() == rule.value.strip().casefold()


def rule_points(
    rules: Iterable[Rule],
    lead: Mapping[str, Any],
    activities: Iterable[Mapping[str, Any]],
    now: dt.datetime,
) -> list[RulePoints]:
    """Return the points each matching rule gives the lead at ``now``.

    Field rules decay from the lead's ``created_at``, activity rules from
    each activity's ``occurred_at``.
    """
    activity_list = list(activities)
    found = []
    for rule in rules:
        if rule.kind == "field":
            if matches(rule, lead):
                age = now - lead["created_at"]
                points = decay(rule.points, age, rule.half_life_days)
                found.append(RulePoints(rule.describe(), points))
            continue
        total = 0.0
        count = 0
        for activity in activity_list:
            if activity["kind"] == rule.field:
                age = now - activity["occurred_at"]
                total += decay(rule.points, age, rule.half_life_days)
                count += 1
        if count:
            kind = rule.field.replace("_", " ")
            text = f"{count} {kind} {'activity' if count == 1 else 'activities'}"
            found.append(RulePoints(text, total))
    return found


def rule_score(points: Iterable[RulePoints]) -> int:
    """Return the sum of the points, rounded and kept within 0 to 100."""
    return max(0, min(100, round(sum(item.points for item in points))))
