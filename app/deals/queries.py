"""Reading pipelines, boards and deals."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from app.boards import PAGE_SIZE, BoardFilter, Cursor
from app.deals.tables import Deal, Pipeline, Stage
from app.errors import NotFound

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


async def stage_totals(
    pipeline_id: int, board_filter: BoardFilter, stage_ids: list[int] | None = None
) -> dict[int, tuple[int, Decimal]]:
    """Count and total amount of each stage's deals, over the whole column."""
    args: list[object] = [pipeline_id]
    where = "pipeline = {}" + board_filter.sql("owner", "team", args)
    if stage_ids is not None:
        args.append(stage_ids)
        where += " AND stage = ANY({})"
    rows = await Deal.raw(
        f"SELECT stage, count(*) AS n, coalesce(sum(amount), 0) AS total "
        f"FROM deal WHERE {where} GROUP BY stage",
        *args,
    )
    return {row["stage"]: (row["n"], row["total"]) for row in rows}


async def column_cards(
    pipeline_id: int,
    stage_id: int,
    board_filter: BoardFilter,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Return one page of a column, newest arrivals first, and the next cursor."""
    args: list[object] = [pipeline_id, stage_id]
    where = "d.pipeline = {} AND d.stage = {}" + board_filter.sql(
        "d.owner", "d.team", args
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
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Cursor(at=last["stage_entered_at"], id=last["id"])


async def get_board(pipeline_id: int, board_filter: BoardFilter) -> Board:
    pipeline = await get_pipeline(pipeline_id)
    stages = await list_stages(pipeline_id)
    totals = await stage_totals(pipeline_id, board_filter)

    first_pages = await first_pages_of_columns(pipeline_id, board_filter)
    columns = []
    for stage in stages:
        count, total = totals.get(stage["id"], (0, Decimal(0)))
        column = Column(stage=stage, count=count, total=total)
        cards = first_pages.get(stage["id"], [])
        column.cards = cards[:PAGE_SIZE]
        if len(cards) > PAGE_SIZE:
            last = cards[PAGE_SIZE - 1]
            column.next_cursor = Cursor(at=last["stage_entered_at"], id=last["id"])
        columns.append(column)
    return Board(pipeline=pipeline, columns=columns, filter=board_filter)


async def first_pages_of_columns(
    pipeline_id: int, board_filter: BoardFilter
) -> dict[int, list[dict[str, Any]]]:
    """Return the first page (plus one card) of every column in one query."""
    args: list[object] = []
    condition = board_filter.sql("d.owner", "d.team", args)
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
