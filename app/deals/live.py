"""Fragments pushed to pipeline boards and to deal pages.

Each variant carries its viewers' access (``app.access.views``): a variant
gets the card only when its viewers may read the deal, and without the
fields hidden from them. A variant with nothing to show gets an empty
fragment, which still carries the event's sequence number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.access.permissions import Access
from app.access.scopes import comment_permits, permits_record, redact
from app.access.views import split_variant, view_key
from app.boards import BoardFilter, place_card
from app.comments.live import render_new_comment
from app.comments.service import timeline
from app.deals import queries
from app.forecast.probability import DealChance
from app.tasks.live import render_task_list, task_list_html
from app.tasks.service import record_tasks
from app.web.deletion import render_deleted_notice
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


def before_change(event: Event, deal: dict[str, Any] | None) -> dict[str, Any]:
    """Return the owner and team the deal had before the event."""
    before = {"owner": None, "team": None} if deal is None else dict(deal)
    for name in ("owner", "team"):
        change = event.changes.get(name)
        if isinstance(change, list) and len(change) == 2:
            before[name] = change[0]
    return before


def reload_fragment(pipeline_id: int, variant: str) -> str:
    board_key, _ = split_variant(variant)
    return render("deals/_reload.html", pipeline_id=pipeline_id, query=board_key)


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
    stage_list = list(stages.values())
    moved = event.kind == "deal.created" or "stage" in event.changes
    reassigned = "owner" in event.changes or "team" in event.changes
    stage_ids = set(touched_stages(event))
    if deal is not None:
        stage_ids.add(deal["stage"])
    on_board = deal is not None and deal["pipeline"] == pipeline_id
    before = before_change(event, deal)

    cards: dict[str, tuple[str, str]] = {}
    fragments = {}
    for variant in variants:
        board_key, access = split_variant(variant)
        readable = on_board and permits_record(access, "deal", "read", deal)
        was_readable = permits_record(access, "deal", "read", before)
        if not (readable or was_readable):
            # Nothing this variant shows changed: its scoped counts and
            # totals stay as they were.
            fragments[variant] = ""
            continue

        card = card_oob = ""
        if readable:
            view = view_key(variant)
            if view not in cards:
                shown = redact(access, "deal", deal)
                cards[view] = (
                    render(
                        "deals/_card.html", deal=shown, stages=stage_list, access=access
                    ),
                    render(
                        "deals/_card.html",
                        deal=shown,
                        stages=stage_list,
                        access=access,
                        oob=True,
                    ),
                )
            card, card_oob = cards[view]

        board_filter = BoardFilter.from_key(board_key)
        column_totals = await column_totals_for(
            pipeline_id, board_filter, access, sorted(stage_ids), totals
        )
        restricted = access.scope("deal", "read") != "all"
        placement = place_card(
            board_filter, deal if card else None, "owner", moved, reassigned, restricted
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
            query=board_key,
            access=access,
        )
    return fragments


async def column_totals_for(
    pipeline_id: int,
    board_filter: BoardFilter,
    access: Access,
    stage_ids: list[int],
    totals: dict[int, tuple[int, Decimal]],
) -> dict[int, tuple[int, Decimal]]:
    """Return the column heads' counts and totals in this variant's filter and scope."""
    if board_filter == BoardFilter() and access.scope("deal", "read") == "all":
        return totals
    return await queries.stage_totals(pipeline_id, board_filter, stage_ids, access)


async def render_deal_page(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    deal_id = int(topic.partition(":")[2])
    if event.kind == "comment.created":
        deal = await load_page_deal(deal_id, cache)
        return {
            variant: await render_new_comment(event, cache, split_variant(variant)[1])
            if can_read_comments(variant, deal)
            else ""
            for variant in variants
        }
    if event.record_type == "task":
        return await render_task_list("deal", deal_id, variants, cache)
    if event.kind == "deal.deleted":
        return await render_deleted_notice(event, variants)
    if event.record_type != "deal":
        return dict.fromkeys(variants, "")

    deal, _ = await load_deal(event, cache)
    before = before_change(event, deal)
    chance = await load_chance(deal_id, cache) if deal is not None else None
    summaries: dict[str, str] = {}
    fragments = {}
    for variant in variants:
        _, access = split_variant(variant)
        if deal is None or not permits_record(access, "deal", "read", deal):
            lost = permits_record(access, "deal", "read", before)
            fragments[variant] = (
                render("_access_lost.html", record_type="deal", record_id=deal_id)
                if lost
                else ""
            )
            continue
        view = view_key(variant)
        if view not in summaries:
            shown = redact(access, "deal", deal)
            summaries[view] = deal_fields_html(shown, chance, access)
        fragments[variant] = summaries[view]
    return fragments


def deal_fields_html(
    deal: dict[str, Any], chance: DealChance | None, access: Access
) -> str:
    """Render the parts of a deal page that show its fields, out of band: the
    breadcrumb, the summary and the win probability panel."""
    return (
        render("deals/_crumbs.html", deal=deal, access=access, oob=True)
        + render("deals/_summary.html", deal=deal, access=access, oob=True)
        + render(
            "deals/_chance.html", deal=deal, chance=chance, access=access, oob=True
        )
    )


async def load_chance(deal_id: int, cache: dict[str, Any]) -> DealChance | None:
    """Read the deal's stored win probability once per event, for every view."""
    from app.forecast.scores import stored_chance

    key = f"deal-chance:{deal_id}"
    if key not in cache:
        cache[key] = await stored_chance(deal_id)
    result: DealChance | None = cache[key]
    return result


async def load_page_deal(deal_id: int, cache: dict[str, Any]) -> dict[str, Any] | None:
    key = f"deal-row:{deal_id}"
    if key not in cache:
        card = await queries.get_card(deal_id)
        cache[key] = dict(card) if card else None
    result: dict[str, Any] | None = cache[key]
    return result


def can_read_comments(variant: str, deal: dict[str, Any] | None) -> bool:
    _, access = split_variant(variant)
    return deal is not None and comment_permits(access, "read", "deal", deal)


async def snapshot_pipeline(topic: str, variant: str) -> str:
    pipeline_id = int(topic.partition(":")[2])
    board_key, access = split_variant(variant)
    board = await queries.get_board(
        pipeline_id, BoardFilter.from_key(board_key), access
    )
    stages = [column.stage for column in board.columns]
    return render(
        "deals/_board.html", board=board, stages=stages, access=access, oob=True
    )


async def snapshot_deal_page(topic: str, variant: str) -> str:
    deal_id = int(topic.partition(":")[2])
    _, access = split_variant(variant)
    deal = await queries.get_deal(deal_id)
    if not permits_record(access, "deal", "read", deal):
        return ""
    shown = redact(access, "deal", deal)
    text = deal_fields_html(shown, await queries.win_chance(deal_id), access)
    if can_read_comments(variant, deal):
        comments = await timeline("deal", deal_id)
        text += render(
            "comments/_list.html", comments=comments, access=access, oob=True
        )
    can_edit = permits_record(access, "deal", "edit", deal)
    tasks = await record_tasks("deal", deal_id)
    text += task_list_html("deal", deal_id, tasks, can_edit)
    return text
