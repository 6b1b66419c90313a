"""Reading pipelines, boards and deals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from app.access.permissions import SYSTEM, Access
from app.access.scopes import redact_rows, scope_sql
from app.boards import PAGE_SIZE, BoardFilter, Cursor
from app.deals.tables import Deal, Pipeline, Stage
from app.errors import NotFound
from app.forecast.probability import DealChance, DealFacts, WinRates, deal_chance
from app.forecast.service import FACTS_SQL, facts_of, load_models
from app.pagination import contains_pattern

CARD_COLUMNS = """
    d.id, d.name, d.amount, d.close_date, d.version, d.pipeline, d.stage,
    d.owner, d.team, d.account, d.stage_entered_at,
    a.name AS account_name, u.name AS owner_name
"""
CARD_JOINS = """
    FROM deal d
    LEFT JOIN account a ON a.id = d.account
    LEFT JOIN app_user u ON u.id = d.owner
"""


@dataclass
class Column:
    stage: dict[str, Any]
    count: int = 0
    total: Decimal = Decimal(0)
    cards: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: Cursor | None = None


@dataclass
class Board:
    pipeline: dict[str, Any]
    columns: list[Column]
    filter: BoardFilter


async def list_pipelines() -> list[dict[str, Any]]:
    return await Pipeline.select(Pipeline.id, Pipeline.name).order_by(
        Pipeline.position, Pipeline.id
    )


async def get_pipeline(pipeline_id: int) -> dict[str, Any]:
    row = (
        await Pipeline.select(Pipeline.id, Pipeline.name)
        .where(Pipeline.id == pipeline_id)
        .first()
    )
    if row is None:
        raise NotFound("pipeline", pipeline_id)
    return row


async def list_stages(pipeline_id: int) -> list[dict[str, Any]]:
    return (
        await Stage.select(
            Stage.id, Stage.name, Stage.kind, Stage.probability, Stage.position
        )
        .where(Stage.pipeline == pipeline_id)
        .order_by(Stage.position, Stage.id)
    )


def deal_conditions(
    board_filter: BoardFilter, access: Access, args: list[object]
) -> str:
    """Return " AND ..." conditions of a board filter and the viewer's scope."""
    condition = board_filter.sql("d.owner", "d.team", args)
    return condition + " AND " + scope_sql(access, "deal", "d", args)


async def stage_totals(
    pipeline_id: int,
    board_filter: BoardFilter,
    stage_ids: list[int] | None = None,
    access: Access = SYSTEM,
) -> dict[int, tuple[int, Decimal]]:
    """Count and total amount of each stage's deals, over the whole column."""
    args: list[object] = [pipeline_id]
    where = "d.pipeline = {}" + deal_conditions(board_filter, access, args)
    if stage_ids is not None:
        args.append(stage_ids)
        where += " AND d.stage = ANY({})"
    rows = await Deal.raw(
        f"SELECT d.stage, count(*) AS n, coalesce(sum(d.amount), 0) AS total "
        f"FROM deal d WHERE {where} GROUP BY d.stage",
        *args,
    )
    return {row["stage"]: (row["n"], row["total"]) for row in rows}


async def column_cards(
    pipeline_id: int,
    stage_id: int,
    board_filter: BoardFilter,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
    access: Access = SYSTEM,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Return one page of a column, newest arrivals first, and the next cursor.

    The cards come without the fields hidden from ``access``.
    """
    args: list[object] = [pipeline_id, stage_id]
    where = "d.pipeline = {} AND d.stage = {}" + deal_conditions(
        board_filter, access, args
    )
    if after is not None:
        args.extend([after.at, after.id])
        where += " AND (d.stage_entered_at, d.id) < ({}, {})"
    args.append(limit + 1)
    rows = await Deal.raw(
        f"SELECT {CARD_COLUMNS} {CARD_JOINS} WHERE {where} "
        f"ORDER BY d.stage_entered_at DESC, d.id DESC LIMIT {{}}",
        *args,
    )
    if len(rows) <= limit:
        return redact_rows(access, "deal", rows), None
    last = rows[limit - 1]
    cursor = Cursor(at=last["stage_entered_at"], id=last["id"])
    return redact_rows(access, "deal", rows[:limit]), cursor


async def get_board(
    pipeline_id: int, board_filter: BoardFilter, access: Access = SYSTEM
) -> Board:
    """Load a board with the deals ``access`` may read, without the fields
    hidden from it."""
    pipeline = await get_pipeline(pipeline_id)
    stages = await list_stages(pipeline_id)
    totals = await stage_totals(pipeline_id, board_filter, access=access)

    first_pages = await first_pages_of_columns(pipeline_id, board_filter, access)
    columns = []
    for stage in stages:
        count, total = totals.get(stage["id"], (0, Decimal(0)))
        column = Column(stage=stage, count=count, total=total)
        cards = first_pages.get(stage["id"], [])
        column.cards = redact_rows(access, "deal", cards[:PAGE_SIZE])
        if len(cards) > PAGE_SIZE:
            last = cards[PAGE_SIZE - 1]
            column.next_cursor = Cursor(at=last["stage_entered_at"], id=last["id"])
        columns.append(column)
    return Board(pipeline=pipeline, columns=columns, filter=board_filter)


async def first_pages_of_columns(
    pipeline_id: int, board_filter: BoardFilter, access: Access = SYSTEM
) -> dict[int, list[dict[str, Any]]]:
    """Return the first page (plus one card) of every column in one query."""
    args: list[object] = []
    condition = deal_conditions(board_filter, access, args)
    args.extend([PAGE_SIZE + 1, pipeline_id])
    rows = await Deal.raw(
        "SELECT c.* FROM stage s CROSS JOIN LATERAL ("
        f"  SELECT {CARD_COLUMNS} {CARD_JOINS}"
        f"  WHERE d.pipeline = s.pipeline AND d.stage = s.id {condition}"
        "   ORDER BY d.stage_entered_at DESC, d.id DESC LIMIT {}"
        ") c WHERE s.pipeline = {} "
        "ORDER BY c.stage, c.stage_entered_at DESC, c.id DESC",
        *args,
    )
    pages: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        pages.setdefault(row["stage"], []).append(row)
    return pages


async def get_card(deal_id: int) -> dict[str, Any] | None:
    rows = await Deal.raw(
        f"SELECT {CARD_COLUMNS} {CARD_JOINS} WHERE d.id = {{}}", deal_id
    )
    return rows[0] if rows else None


DETAIL_COLUMNS = """
    d.engage_date, d.product, d.contact, d.created_at, d.updated_at,
    d.forecast_category, s.probability AS stage_probability,
    p.name AS product_name, s.name AS stage_name, s.kind AS stage_kind,
    pl.name AS pipeline_name, t.name AS team_name,
    nullif(trim(c.first_name || ' ' || c.last_name), '') AS contact_name
"""
DETAIL_JOINS = """
    JOIN stage s ON s.id = d.stage
    JOIN pipeline pl ON pl.id = d.pipeline
    LEFT JOIN product p ON p.id = d.product
    LEFT JOIN team t ON t.id = d.team
    LEFT JOIN contact c ON c.id = d.contact
"""


async def get_deal_with_totals(
    deal_id: int, stage_ids: list[int]
) -> tuple[dict[str, Any] | None, dict[int, tuple[int, Decimal]]]:
    """Load a deal and the unfiltered totals of its stage and ``stage_ids``.

    One query serves every page a change is pushed to: the card and column
    headers of the boards, and the summary of the deal's own page.
    """
    rows = await Deal.raw(
        f"SELECT {CARD_COLUMNS}, {DETAIL_COLUMNS}, ("
        "  SELECT coalesce(json_agg(json_build_object("
        "    'stage', x.stage, 'n', x.n, 'total', x.total)), '[]')::text"
        "  FROM (SELECT stage, count(*) AS n, coalesce(sum(amount), 0) AS total"
        "        FROM deal WHERE pipeline = d.pipeline"
        "        AND (stage = ANY({}) OR stage = d.stage)"
        "        GROUP BY stage) x"
        f") AS totals {CARD_JOINS} {DETAIL_JOINS} WHERE d.id = {{}}",
        stage_ids,
        deal_id,
    )
    if not rows:
        return None, {}

    deal = dict(rows[0])
    totals = {
        item["stage"]: (item["n"], Decimal(str(item["total"])))
        for item in msgspec.json.decode(deal.pop("totals"))
    }
    return deal, totals


async def get_deal(deal_id: int) -> dict[str, Any]:
    rows = await Deal.raw(
        f"SELECT {CARD_COLUMNS}, {DETAIL_COLUMNS} {CARD_JOINS} {DETAIL_JOINS} "
        "WHERE d.id = {}",
        deal_id,
    )
    if not rows:
        raise NotFound("deal", deal_id)
    return rows[0]


# How many options the entry form's account, contact and product lists show;
# typing in their search box narrows them.
CHOICES_LIMIT = 20
CHOICE_SQL = {
    "account": (
        "SELECT a.id, a.name FROM account a WHERE {scope} {search} "
        "ORDER BY lower(a.name), a.id LIMIT {{}}",
        "account",
        "a",
        "a.name",
    ),
    "contact": (
        "SELECT c.id, nullif(trim(c.first_name || ' ' || c.last_name), '') AS name "
        "FROM contact c WHERE {scope} {search} "
        # Contacts of the deal's account come first.
        "ORDER BY (c.account IS NOT DISTINCT FROM {{}}) DESC, "
        "lower(c.last_name), lower(c.first_name), c.id LIMIT {{}}",
        "contact",
        "c",
        "(c.first_name || ' ' || c.last_name)",
    ),
    "product": (
        "SELECT p.id, p.name FROM product p WHERE TRUE {search} "
        "ORDER BY lower(p.name), p.id LIMIT {{}}",
        None,
        "p",
        "p.name",
    ),
}


async def entry_choices(
    field_name: str,
    search: str,
    deal: dict[str, Any],
    access: Access,
    limit: int = CHOICES_LIMIT,
    record_id: int | None = None,
) -> list[dict[str, Any]]:
    """Return the first ``limit`` accounts, contacts or products whose name
    contains ``search``, of those the viewer may read, or only the one with
    ``record_id``."""
    sql, object_type, alias, name_sql = CHOICE_SQL[field_name]
    args: list[object] = []
    scope = scope_sql(access, object_type, alias, args) if object_type else "TRUE"
    condition = ""
    if search:
        args.append(contains_pattern(search))
        condition = f"AND {name_sql} ILIKE {{}}"
    if record_id is not None:
        args.append(record_id)
        condition += f" AND {alias}.id = {{}}"
    if field_name == "contact":
        args.append(deal.get("account"))
    args.append(limit)
    return await Deal.raw(sql.format(scope=scope, search=condition), *args)


# Counts of the pipeline's closed deals, and of those of one owner, account
# and product, as ``WinRates.of`` counts them: a deal closed on the day it
# entered its won or lost stage. The arguments are the owner, account and
# product twice each, then the pipeline and the first day not counted.
WIN_COUNTS_SQL = """
SELECT count(*) AS closed,
       count(*) FILTER (WHERE s.kind = 'won') AS won,
       count(*) FILTER (WHERE d.owner = {}) AS owner_closed,
       count(*) FILTER (WHERE d.owner = {} AND s.kind = 'won') AS owner_won,
       count(*) FILTER (WHERE d.account = {}) AS account_closed,
       count(*) FILTER (WHERE d.account = {} AND s.kind = 'won') AS account_won,
       count(*) FILTER (WHERE d.product = {}) AS product_closed,
       count(*) FILTER (WHERE d.product = {} AND s.kind = 'won') AS product_won
FROM deal d
JOIN stage s ON s.id = d.stage
WHERE d.pipeline = {} AND s.kind IN ('won', 'lost')
  AND d.stage_entered_at::date < {}
"""


async def win_rates(deal: DealFacts, before: dt.date) -> WinRates:
    """Return the win rates the model reads for ``deal``, over the deals closed
    before ``before``, from one aggregate query rather than the whole pipeline."""
    rows = await Deal.raw(
        WIN_COUNTS_SQL,
        deal.owner,
        deal.owner,
        deal.account,
        deal.account,
        deal.product,
        deal.product,
        deal.pipeline,
        before,
    )
    row = rows[0]
    return WinRates(
        overall=row["won"] / row["closed"] if row["closed"] else 0.5,
        owners={deal.owner: (row["owner_won"], row["owner_closed"])},
        accounts={deal.account: (row["account_won"], row["account_closed"])},
        products={deal.product: (row["product_won"], row["product_closed"])},
    )


async def win_chance(deal_id: int, today: dt.date | None = None) -> DealChance | None:
    """Compute an open deal's win probability and its factors.

    Returns None for a closed deal or one that does not exist. The figure is
    the one the forecast counts on ``today`` (by default the current UTC
    day): the pipeline's model, else the stage's fixed probability.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    rows = await Deal.raw(FACTS_SQL + " WHERE d.id = {}", deal_id)
    if not rows:
        return None
    facts = facts_of(rows[0])
    if facts.closed is not None:
        return None
    model = (await load_models()).get(facts.pipeline)
    if model is None:
        return deal_chance(None, facts, WinRates(), today)
    rates = await win_rates(facts, today + dt.timedelta(days=1))
    return deal_chance(model, facts, rates, today)
