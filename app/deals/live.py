"""Fragments pushed to pipeline boards and to deal pages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.boards import BoardFilter, place_card
from app.comments.live import render_new_comment
from app.comments.service import timeline
from app.deals import queries
from app.web.templating import render
from realtime.messages import Event

# Stages change only through admin work and imports, both of which send a
# "board.reload" event, so each process keeps them until it receives one.
_stages: dict[int, list[dict[str, Any]]] = {}


async def pipeline_stages(pipeline_id: int) -> list[dict[str, Any]]:
    if pipeline_id not in _stages:
        _stages[pipeline_id] = await queries.list_stages(pipeline_id)
    return _stages[pipeline_id]


def forget_stages(pipeline_id: int | None = None) -> None:
    if pipeline_id is None:
        _stages.clear()
    else:
        _stages.pop(pipeline_id, None)


def touched_stages(event: Event) -> list[int]:
    moved = event.changes.get("stage")
    return [stage for stage in moved if stage is not None] if moved else []


async def load_deal(event: Event, cache: dict[str, Any]) -> tuple[Any, Any]:
    """Load the deal and its column totals once per event, for every topic."""
    key = f"deal:{event.record_id}"
    if key not in cache:
        cache[key] = await queries.get_deal_with_totals(
            event.record_id, touched_stages(event)
        )
    return cache[key]


def reload_fragment(pipeline_id: int, variant: str) -> str:
    return render("deals/_reload.html", pipeline_id=pipeline_id, query=variant)


async def render_pipeline(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    pipeline_id = int(topic.partition(":")[2])
    if event.kind == "board.reload":
        forget_stages(pipeline_id)
        return {variant: reload_fragment(pipeline_id, variant) for variant in variants}
    if event.record_type != "deal":
        return dict.fromkeys(variants, "")

    deal, totals = await load_deal(event, cache)
    stages = {stage["id"]: stage for stage in await pipeline_stages(pipeline_id)}
    moved = event.kind == "deal.created" or "stage" in event.changes
    reassigned = "owner" in event.changes or "team" in event.changes
    stage_ids = set(touched_stages(event))
    if deal is not None:
        stage_ids.add(deal["stage"])

    card = card_oob = ""
    if deal is not None and deal["pipeline"] == pipeline_id:
        stage_list = list(stages.values())
        card = render("deals/_card.html", deal=deal, stages=stage_list)
        card_oob = render("deals/_card.html", deal=deal, stages=stage_list, oob=True)

    fragments = {}
    for variant in variants:
        board_filter = BoardFilter.from_key(variant)
        if board_filter == BoardFilter():
            column_totals = totals
        else:
            column_totals = await queries.stage_totals(
                pipeline_id, board_filter, sorted(stage_ids)
            )

        placement = place_card(
            board_filter, deal if card else None, "owner", moved, reassigned
        )
        fragments[variant] = render(
            "deals/_live_update.html",
            deal_id=event.record_id,
            card=card,
            card_oob=card_oob,
            card_stage=deal["stage"] if deal else None,
            placement=placement,
            heads=[
                (stages[stage_id], *column_totals.get(stage_id, (0, Decimal(0))))
                for stage_id in sorted(stage_ids)
                if stage_id in stages
            ],
            pipeline_id=pipeline_id,
            query=variant,
        )
    return fragments


async def render_deal_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    if event.kind == "comment.created":
        text = await render_new_comment(event, cache)
    elif event.record_type == "deal":
        deal, _ = await load_deal(event, cache)
        text = render("deals/_summary.html", deal=deal, oob=True) if deal else ""
    else:
        text = ""
    return dict.fromkeys(variants, text)


async def snapshot_pipeline(topic: str, variant: str) -> str:
    pipeline_id = int(topic.partition(":")[2])
    board = await queries.get_board(pipeline_id, BoardFilter.from_key(variant))
    stages = [column.stage for column in board.columns]
    return render("deals/_board.html", board=board, stages=stages, oob=True)


async def snapshot_deal_page(topic: str, variant: str) -> str:
    deal_id = int(topic.partition(":")[2])
    deal = await queries.get_deal(deal_id)
    comments = await timeline("deal", deal_id)
    return render("deals/_summary.html", deal=deal, oob=True) + render(
        "comments/_list.html", comments=comments, oob=True
    )
