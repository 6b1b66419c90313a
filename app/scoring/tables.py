"""Scoring rules that admins write, and the trained predictive models."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Bytea,
    DoublePrecision,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

RULE_KINDS = ("field", "activity")


class ScoringRule(Table):
    """Points for a lead field's value, or for each activity of a kind.

    With ``half_life_days`` the points halve every that many days: since
    the activity for an activity rule, since the lead arrived for a field rule.
    """

    id: Serial
    kind = Varchar(length=10)
    field = Varchar(length=120)
    value = Varchar(length=200, default="")
    points = Integer()
    half_life_days = DoublePrecision(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ScoringModel(Table):
    """One trained model; the highest version is the one in use."""

    id: Serial
    version = Integer(unique=True)
    trained_at = Timestamptz(default=TimestamptzNow())
    model = Bytea()
    metrics = JSONB(default="{}")
    # How many closed leads it was trained on.
    outcomes = Integer()
