"""Changes sent at a steady rate: deal moves through the web app, or raw publishes.

Each change is sent at its scheduled time whatever happened to the ones
before it (an open loop), so a slow response delays no later change. The
clock is ``time.monotonic_ns``, which is CLOCK_MONOTONIC on Linux and so
comparable with the receive times that client processes record.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from bench.database import PipelineDeals
from bench.session import Session

START_DELAY = 0.05
NO_RESPONSE = -1


@dataclass(frozen=True)
class Move:
    deal_id: int
    from_stage: int
    to_stage: int
    pipeline: PipelineDeals


@dataclass(frozen=True)
class Change:
    """One sent change; ``sent_ns`` is taken just before the request is sent.

    ``status`` is the HTTP status, 0 for a Redis publish, or ``NO_RESPONSE``
    when the request failed without a response (a timeout or a reset).
    """

    deal_id: int
    topic: str
    sent_ns: int
    response_ns: int
    status: int


class MovePlanner:
    """Hand out moves of deals not moved before in this run, to the next stage.

    Moving every deal at most once makes ``id="deal-<id>"`` in a frame name
    exactly one change.
    """

    def __init__(self, pipelines: list[PipelineDeals]) -> None:
        self.pipelines = pipelines
        self.unmoved = {pipeline.id: list(pipeline.deals) for pipeline in pipelines}

    def take(self, count: int) -> list[Move]:
        """Return ``count`` moves, taking deals from the pipelines in turn."""
        moves = []
        for pipeline in itertools.islice(itertools.cycle(self.pipelines), count):
            remaining = self.unmoved[pipeline.id]
            if not remaining:
                raise RuntimeError(
                    f"pipeline {pipeline.id} has no deal left that this run has "
                    "not moved: the settings request more moves than it has deals"
                )
            deal_id = remaining.pop()
            from_stage = pipeline.deals[deal_id]
            position = pipeline.stages.index(from_stage)
            to_stage = pipeline.stages[(position + 1) % len(pipeline.stages)]
            moves.append(Move(deal_id, from_stage, to_stage, pipeline))
        return moves


async def send_at_rate(
    count: int, rate: float, send: Callable[[int], Awaitable[Change]]
) -> list[Change]:
    """Call ``send(index)`` for each index at ``rate`` calls per second."""
    start = time.monotonic() + START_DELAY

    async def scheduled(index: int) -> Change:
        await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        return await send(index)

    return list(await asyncio.gather(*(scheduled(index) for index in range(count))))


async def post_moves(session: Session, moves: list[Move], rate: float) -> list[Change]:
    """POST each move to /deals/<id>/stage as the board's drag and drop does."""

    async def send(index: int) -> Change:
        move = moves[index]
        form = {"stage": str(move.to_stage), "from_stage": str(move.from_stage)}
        sent = time.monotonic_ns()
        try:
            response = await session.post_htmx(f"/deals/{move.deal_id}/stage", form)
            status = response.status_code
        except httpx.HTTPError:
            status = NO_RESPONSE
        received = time.monotonic_ns()
        if status == 204:
            move.pipeline.deals[move.deal_id] = move.to_stage
        return Change(
            deal_id=move.deal_id,
            topic=move.pipeline.topic,
            sent_ns=sent,
            response_ns=received - sent,
            status=status,
        )

    return await send_at_rate(len(moves), rate, send)


def synthetic_frame(deal_id: int, size: int) -> str:
    """Return a frame of ``size`` characters that names ``deal_id`` as a real one."""
    head = f'<div id="deal-{deal_id}" hx-swap-oob="delete"></div>'
    return head + " " * max(0, size - len(head))


async def publish_frames(
    redis: Redis,
    channel_prefix: str,
    targets: list[tuple[int, str]],
    frame_size: int,
    rate: float,
) -> list[Change]:
    """Publish one frame per ``(deal id, topic)`` on ``<channel_prefix><topic>``."""

    async def send(index: int) -> Change:
        deal_id, topic = targets[index]
        text = synthetic_frame(deal_id, frame_size)
        sent = time.monotonic_ns()
        await redis.publish(f"{channel_prefix}{topic}", text)
        return Change(
            deal_id=deal_id,
            topic=topic,
            sent_ns=sent,
            response_ns=time.monotonic_ns() - sent,
            status=0,
        )

    return await send_at_rate(len(targets), rate, send)
