"""Quotas, nightly forecast snapshots and the trained win models."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from app.auth.tables import Team, User
from app.deals.tables import Pipeline


class Quota(Table, tablename="forecast_quota"):
    """The closed-won amount one owner or one team is to reach in a period.

    Exactly one of ``owner`` and ``team`` is set (a CHECK constraint).
    ``period_kind`` is "month" or "quarter" and ``period_start`` its first day.
    """

    id: Serial
    period_kind = Varchar(length=10)
    period_start = Date()
    owner = ForeignKey(User, null=True, default=None, on_delete=OnDelete.cascade)
    team = ForeignKey(Team, null=True, default=None, on_delete=OnDelete.cascade)
    amount = Numeric(digits=(14, 2))
    updated_at = Timestamptz(default=TimestamptzNow())


class ForecastSnapshot(Table, tablename="forecast_snapshot"):
    """One period's figures for one group as they stood on ``taken_on``.

    ``group_kind`` is "total", "owner", "team" or "pipeline", and
    ``group_id`` the owner, team or pipeline id (0 for the total).
    """

    id: Serial
    taken_on = Date()
    period_kind = Varchar(length=10)
    period_start = Date()
    group_kind = Varchar(length=10)
    group_id = Integer(default=0)
    closed_won = Numeric(digits=(16, 2))
    commit = Numeric(digits=(16, 2))
    best_case = Numeric(digits=(16, 2))
    weighted = Numeric(digits=(16, 2))
    created_at = Timestamptz(default=TimestamptzNow())


class WinModelRecord(Table, tablename="forecast_model"):
    """The latest trained win model of a pipeline, as ``WinModel.to_json``."""

    id: Serial
    pipeline = ForeignKey(Pipeline, unique=True, on_delete=OnDelete.cascade)
    model = JSONB(default="{}")
    closed_deals = Integer(default=0)
    trained_at = Timestamptz(default=TimestamptzNow())
