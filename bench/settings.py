"""How much each measurement does: request counts, socket counts and rates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Counts, socket numbers, rates in moves per second and durations in seconds."""

    page_warmup: int = 20
    page_rounds: int = 300
    redis_warmup: int = 50
    redis_round_trips: int = 500
    # One board watched by many sockets on one web process.
    board_sockets: int = 100
    board_client_processes: int = 1
    board_rate: float = 20.0
    board_seconds: float = 10.0
    # Many small boards over several web processes.
    heavy_pipelines: int = 50
    heavy_sockets_per_pipeline: int = 20
    heavy_servers: int = 2
    heavy_client_processes: int = 4
    heavy_rate: float = 50.0
    heavy_seconds: float = 10.0
    # The same sockets again at a higher rate, to find where deliveries stop
    # keeping up with the moves.
    ceiling_rate: float = 100.0
    ceiling_seconds: float = 5.0
    warmup_changes: int = 10
    query_pages: int = 20
    query_sockets: int = 10
    query_events: int = 50
    query_moves: int = 20
    # The reconnect storm: sockets on the Maven board and on each small
    # pipeline, all on one web process that is killed and started again.
    storm_board_sockets: int = 2000
    storm_sockets_per_pipeline: int = 160
    storm_client_processes: int = 4
    # Moves per stream before the kill, so every socket has a recent
    # position, and while the server is down.
    storm_warmup_changes_per_stream: int = 1
    storm_changes_per_stream: int = 2
    storm_change_rate: float = 50.0
    # How long after the restart the clients may take to catch up.
    storm_deadline_seconds: float = 75.0
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Settings:
        """Settings for a smoke run of about 80 seconds; its figures are rough."""
        return replace(
            cls(),
            page_rounds=50,
            redis_round_trips=100,
            board_seconds=2.0,
            heavy_seconds=2.0,
            ceiling_seconds=2.0,
            query_events=10,
            query_moves=5,
            storm_board_sockets=200,
            storm_sockets_per_pipeline=16,
            storm_client_processes=2,
            storm_changes_per_stream=1,
            storm_deadline_seconds=60.0,
            quick=True,
        )

    @property
    def board_changes(self) -> int:
        return round(self.board_rate * self.board_seconds)

    @property
    def heavy_changes(self) -> int:
        return round(self.heavy_rate * self.heavy_seconds)

    @property
    def ceiling_changes(self) -> int:
        return round(self.ceiling_rate * self.ceiling_seconds)

    @property
    def small_pipeline_deals(self) -> int:
        """Deals each small pipeline needs so that no deal is moved twice."""
        moves = self.heavy_changes + self.ceiling_changes + self.heavy_pipelines
        storm = self.storm_warmup_changes_per_stream + self.storm_changes_per_stream
        return math.ceil(moves / self.heavy_pipelines) + storm + 2

    @property
    def heavy_sockets(self) -> int:
        return self.heavy_pipelines * self.heavy_sockets_per_pipeline

    @property
    def storm_sockets(self) -> int:
        """Sockets the storm requests; the server's open-file limit may cap it."""
        return (
            self.storm_board_sockets
            + self.heavy_pipelines * self.storm_sockets_per_pipeline
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
