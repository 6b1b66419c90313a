"""Loading deals for the forecast, win models, quotas and snapshots."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from app.access.permissions import Access
from app.deals.tables import Deal
from app.errors import FieldError
from app.events.service import change_set
from app.forecast.figures import Figures, Period, group_figures, total_figures
from app.forecast.probability import (
    DealFacts,
    WinModel,
    probabilities,
    train,
)
from app.forecast.tables import ForecastSnapshot, Quota, WinModelRecord

logger = logging.getLogger(__name__)

GROUP_KINDS = ("owner", "team", "pipeline")
# A closed deal is taken to have been in its pipeline's last open stage
# before it closed (see app.forecast.probability).
FACTS_SQL = """
SELECT d.id, d.pipeline, d.stage, s.kind, s.probability, d.amount, d.owner,
       d.team, d.product, d.account, d.close_date, d.forecast_category,
       coalesce(d.engage_date, d.created_at::date) AS engaged,
       d.stage_entered_at::date AS entered,
       last_open.id AS last_open_stage,
       coalesce(last_open.probability, 0) AS last_open_probability,
       coalesce(c.days, ARRAY[]::date[]) AS comment_days,
       coalesce(m.days, ARRAY[]::date[]) AS stage_move_days
FROM deal d
JOIN stage s ON s.id = d.stage
LEFT JOIN LATERAL (
    SELECT o.id, o.probability FROM stage o
    WHERE o.pipeline = d.pipeline AND o.kind = 'open'
    ORDER BY o.position DESC, o.id DESC LIMIT 1
) last_open ON TRUE
LEFT JOIN LATERAL (
    SELECT array_agg(created_at::date ORDER BY created_at) AS days
    FROM comment WHERE comment.deal = d.id
) c ON TRUE
LEFT JOIN LATERAL (
    SELECT array_agg(a.created_at::date ORDER BY a.id) AS days
    FROM audit_log a
    WHERE a.record_type = 'deal' AND a.record_id = d.id AND a.action = 'update'
      AND a.changes ? 'stage'
) m ON TRUE
"""
# Quota changes have no page of their own to push to, but their events keep
# the same log as every other change.
QUOTA_TOPIC = "forecast"


def facts_of(row: dict[str, Any]) -> DealFacts:
    amount = float(row["amount"] or 0)
    closed = row["kind"] in ("won", "lost")
    return DealFacts(
        id=row["id"],
        pipeline=row["pipeline"],
        stage=row["last_open_stage"] or row["stage"] if closed else row["stage"],
        stage_probability=(
            row["last_open_probability"] if closed else row["probability"]
        ),
        amount=amount,
        engaged=min(row["engaged"], row["entered"]),
        stage_entered=row["entered"],
        owner=row["owner"],
        team=row["team"],
        product=row["product"],
        account=row["account"],
        closed=row["entered"] if closed else None,
        won=row["kind"] == "won",
        expected_close=None if closed else row["close_date"],
        won_amount=amount if row["kind"] == "won" else 0.0,
        comments=tuple(sorted(row["comment_days"] or ())),
        stage_moves=tuple(sorted(row["stage_move_days"] or ())),
        forecast_category=row["forecast_category"],
    )


async def load_facts(pipeline_id: int | None = None) -> list[DealFacts]:
    """Load every deal (of one pipeline when given) as DealFacts, in id order."""
    if pipeline_id is None:
        rows = await Deal.raw(FACTS_SQL + " ORDER BY d.id")
    else:
        rows = await Deal.raw(
            FACTS_SQL + " WHERE d.pipeline = {} ORDER BY d.id", pipeline_id
        )
    return [facts_of(row) for row in rows]


@dataclass
class _CachedModel:
    trained_at: dt.datetime
    model: WinModel | None


_models: dict[int, _CachedModel] = {}


async def load_models() -> dict[int, WinModel]:
    """Return the stored model of each pipeline that has one, cached per process.

    Each call reads only the training times, and decodes a model again only
    when the worker has stored a newer one.
    """
    rows = await WinModelRecord.raw(
        "SELECT pipeline, trained_at FROM forecast_model ORDER BY pipeline"
    )
    models: dict[int, WinModel] = {}
    for row in rows:
        cached = _models.get(row["pipeline"])
        if cached is None or cached.trained_at != row["trained_at"]:
            record = (
                await WinModelRecord.select(WinModelRecord.model)
                .where(WinModelRecord.pipeline == row["pipeline"])
                .first()
            )
            data = record["model"] if record else "{}"
            decoded = msgspec.json.decode(data) if isinstance(data, str) else data
            try:
                model = WinModel.from_json(decoded)
            except (KeyError, TypeError, ValueError):
                logger.exception(
                    "stored win model unreadable pipeline_id=%s", row["pipeline"]
                )
                model = None
            cached = _CachedModel(row["trained_at"], model)
            _models[row["pipeline"]] = cached
        if cached.model is not None:
            models[row["pipeline"]] = cached.model
    return models


async def deal_chances(
    deals: list[DealFacts], today: dt.date, until: dt.date | None = None
) -> dict[int, float]:
    """Return each open deal's probability: its pipeline model's, else its stage's.

    With ``until``, a model's probability is that of a win before that day
    (``app.forecast.probability.chance_by``), and otherwise that of a win
    within a month.
    """
    models = await load_models()
    by_pipeline: dict[int, list[DealFacts]] = defaultdict(list)
    for deal in deals:
        by_pipeline[deal.pipeline].append(deal)
    chances: dict[int, float] = {}
    for pipeline_id, pipeline_deals in by_pipeline.items():
        open_deals = [deal for deal in pipeline_deals if deal.closed is None]
        # Win rates count deals closed up to today.
        chances.update(
            probabilities(
                models.get(pipeline_id),
                open_deals,
                pipeline_deals,
                today + dt.timedelta(days=1),
                until,
            )
        )
    return chances


def readable(deals: list[DealFacts], access: Access) -> list[DealFacts]:
    return [
        deal
        for deal in deals
        if access.permits("deal", "read", deal.owner, [deal.team])
    ]


@dataclass
class ForecastView:
    """A period's figures over the deals a viewer may read."""

    period: Period
    total: Figures
    groups: dict[int | None, Figures]
    group_kind: str


def group_key(kind: str) -> Any:
    if kind == "owner":
        return lambda deal: deal.owner
    if kind == "team":
        return lambda deal: deal.team
    if kind == "pipeline":
        return lambda deal: deal.pipeline
    raise FieldError("group", kind, f"must be one of {', '.join(GROUP_KINDS)}")


async def forecast_view(
    access: Access,
    period: Period,
    group_kind: str,
    today: dt.date,
    pipeline_id: int | None = None,
) -> ForecastView:
    """Compute the period's figures over the viewer's readable deals.

    NOTE: each call loads and scores every deal, about 0.3 s of Python for
    the 8,800 Maven deals (measured on two cores), and the live page calls
    it once per open page for every deal change it can see.
    """
    key = group_key(group_kind)
    deals = await load_facts()
    chances = await deal_chances(deals, today, period.end)
    shown = readable(deals, access)
    if pipeline_id is not None:
        shown = [deal for deal in shown if deal.pipeline == pipeline_id]
    groups = group_figures(shown, chances, period, today, key)
    groups = {
        group: figures
        for group, figures in groups.items()
        if figures.closed_won or figures.best_case
    }
    return ForecastView(
        period=period,
        total=total_figures(shown, chances, period, today),
        groups=groups,
        group_kind=group_kind,
    )


# Training.


async def train_pipeline(pipeline_id: int, today: dt.date) -> WinModel | None:
    """Train and store the pipeline's model, or delete it when history is too short."""
    deals = await load_facts(pipeline_id)
    # Fitting takes seconds on a pipeline of thousands of deals, so it runs in
    # a thread and the worker's other jobs keep running.
    model = await asyncio.to_thread(
        train, pipeline_id, deals, today + dt.timedelta(days=1)
    )
    async with WinModelRecord._meta.db.transaction():
        if model is None:
            await WinModelRecord.delete().where(WinModelRecord.pipeline == pipeline_id)
        else:
            await WinModelRecord.raw(
                "INSERT INTO forecast_model (pipeline, model, closed_deals, "
                "trained_at) VALUES ({}, {}::jsonb, {}, now()) "
                "ON CONFLICT (pipeline) DO UPDATE "
                "SET model = EXCLUDED.model, closed_deals = EXCLUDED.closed_deals, "
                "trained_at = EXCLUDED.trained_at",
                pipeline_id,
                msgspec.json.encode(model.to_json()).decode(),
                model.closed_deals,
            )
    logger.info(
        "win model trained pipeline_id=%s closed_deals=%s rows=%s",
        pipeline_id,
        model.closed_deals if model else 0,
        model.training_rows if model else 0,
    )
    return model


# Quotas.


def parse_amount(raw: str | None) -> Decimal:
    try:
        amount = Decimal((raw or "").replace(",", "").strip())
    except ArithmeticError:
        raise FieldError("amount", raw, "must be a number") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        raise FieldError("amount", raw, "must be between 0 and 999,999,999,999.99")
    return amount.quantize(Decimal("0.01"))


async def set_quota(
    period: Period,
    owner_id: int | None,
    team_id: int | None,
    amount: Decimal,
    actor_id: int | None,
) -> int:
    """Create or change the quota of one owner or one team for ``period``."""
    if (owner_id is None) == (team_id is None):
        raise FieldError("owner", owner_id, "set exactly one of owner and team")
    column = "owner" if owner_id is not None else "team"
    target = owner_id if owner_id is not None else team_id
    table = "app_user" if column == "owner" else "team"
    if not await Quota.raw(f"SELECT 1 FROM {table} WHERE id = {{}}", target):
        raise FieldError(column, target, "does not exist")

    async with change_set(actor_id) as changes:
        before = await Quota.raw(
            f"SELECT id, amount FROM forecast_quota WHERE period_kind = {{}} "
            f"AND period_start = {{}} AND {column} = {{}} FOR UPDATE",
            period.kind,
            period.start,
            target,
        )
        if before:
            quota_id = before[0]["id"]
            await Quota.raw(
                "UPDATE forecast_quota SET amount = {}, updated_at = now() "
                "WHERE id = {}",
                amount,
                quota_id,
            )
            old = str(before[0]["amount"])
        else:
            rows = await Quota.raw(
                f"INSERT INTO forecast_quota (period_kind, period_start, {column}, "
                "amount) VALUES ({}, {}, {}, {}) RETURNING id",
                period.kind,
                period.start,
                target,
                amount,
            )
            quota_id = rows[0]["id"]
            old = None
        changes.add(
            "quota.updated",
            "forecast_quota",
            quota_id,
            [QUOTA_TOPIC],
            {"amount": [old, str(amount)]},
        )
    logger.info(
        "quota set quota_id=%s period=%s %s_id=%s user_id=%s",
        quota_id,
        period.key,
        column,
        target,
        actor_id,
    )
    return quota_id


async def quotas_for(period: Period) -> dict[tuple[str, int], Decimal]:
    """Return the period's quotas by ("owner" or "team", id).

    A quarter without its own quota for someone sums their month quotas.
    """
    rows = await Quota.raw(
        "SELECT period_kind, period_start, owner, team, amount FROM forecast_quota "
        "WHERE period_start >= {} AND period_start < {}",
        period.start,
        period.end,
    )
    own: dict[tuple[str, int], Decimal] = {}
    months: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for row in rows:
        key = ("owner", row["owner"]) if row["owner"] else ("team", row["team"])
        if row["period_kind"] == period.kind and row["period_start"] == period.start:
            own[key] = row["amount"]
        elif period.kind == "quarter" and row["period_kind"] == "month":
            months[key] += row["amount"]
    return {**months, **own}


async def count_quotas(period: Period) -> int:
    rows = await Quota.raw(
        "SELECT count(*) AS n FROM forecast_quota "
        "WHERE period_kind = {} AND period_start = {}",
        period.kind,
        period.start,
    )
    return int(rows[0]["n"])


async def list_quotas(period: Period, limit: int, offset: int) -> list[dict[str, Any]]:
    return await Quota.raw(
        "SELECT q.id, q.period_kind, q.period_start, q.owner, q.team, q.amount, "
        "u.name AS owner_name, t.name AS team_name FROM forecast_quota q "
        "LEFT JOIN app_user u ON u.id = q.owner LEFT JOIN team t ON t.id = q.team "
        "WHERE q.period_kind = {} AND q.period_start = {} "
        "ORDER BY t.name NULLS LAST, u.name, q.id LIMIT {} OFFSET {}",
        period.kind,
        period.start,
        limit,
        offset,
    )


# Snapshots.


def snapshot_periods(today: dt.date) -> list[Period]:
    """Return the periods a snapshot records: this and next month and quarter."""
    month = Period.containing(today, "month")
    quarter = Period.containing(today, "quarter")
    return [month, month.shifted(1), quarter, quarter.shifted(1)]


async def take_snapshots(today: dt.date) -> int:
    """Record each snapshot period's figures per total, owner, team and pipeline.

    Taking them again on the same day replaces that day's rows. Returns the
    number of rows written.
    """
    deals = await load_facts()
    rows: list[tuple[Period, str, int, Figures]] = []
    for period in snapshot_periods(today):
        chances = await deal_chances(deals, today, period.end)
        rows.append((period, "total", 0, total_figures(deals, chances, period, today)))
        for kind in GROUP_KINDS:
            groups = group_figures(deals, chances, period, today, group_key(kind))
            for group_id, figures in groups.items():
                if group_id is not None and (figures.closed_won or figures.best_case):
                    rows.append((period, kind, group_id, figures))

    async with ForecastSnapshot._meta.db.transaction():
        await ForecastSnapshot.delete().where(ForecastSnapshot.taken_on == today)
        for period, kind, group_id, figures in rows:
            await ForecastSnapshot.raw(
                "INSERT INTO forecast_snapshot (taken_on, period_kind, period_start, "
                "group_kind, group_id, closed_won, commit, best_case, weighted) "
                "VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
                today,
                period.kind,
                period.start,
                kind,
                group_id,
                figures.closed_won,
                figures.commit,
                figures.best_case,
                figures.weighted,
            )
    logger.info("forecast snapshots taken day=%s rows=%d", today, len(rows))
    return len(rows)


async def snapshot_history(
    period: Period, group_kind: str, group_id: int, limit: int = 120
) -> list[dict[str, Any]]:
    """Return the latest ``limit`` snapshots of one group and period, oldest first."""
    rows = await ForecastSnapshot.raw(
        "SELECT taken_on, closed_won, commit, best_case, weighted "
        "FROM forecast_snapshot WHERE period_kind = {} AND period_start = {} "
        "AND group_kind = {} AND group_id = {} ORDER BY taken_on DESC LIMIT {}",
        period.kind,
        period.start,
        group_kind,
        group_id,
        limit,
    )
    return list(reversed(rows))
