"""One live fan-out measurement: sockets, a stream of changes, CPU and latency.

Latency is the receive time of a frame in a client process minus the time
just before its change was sent, both on CLOCK_MONOTONIC, for every socket
that watches the change's topic. A delivery still missing when deliveries
stop arriving (``STALL_SECONDS``) is counted as lost.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.changes import Change
from bench.cpu import CpuWindow
from bench.fleet import Fleet
from bench.stats import Summary

POLL_SECONDS = 0.1
STALL_SECONDS = 3.0
MAX_WAIT_SECONDS = 60.0


@dataclass
class FanoutRun:
    changes: list[Change]
    sockets: list[dict[str, Any]]
    cpu: CpuWindow
    expected: int
    socket_servers: list[str]
    writer: str | None
    client_names: list[str]

    @property
    def sent(self) -> list[Change]:
        """Changes that were accepted: HTTP 204, or a publish (status 0)."""
        return [change for change in self.changes if change.status in (0, 204)]

    def deliveries(self) -> tuple[list[float], dict[str, int]]:
        """Return the latencies in ms and the counts of each way a frame went."""
        by_topic: dict[str, dict[int, int]] = {}
        for change in self.sent:
            by_topic.setdefault(change.topic, {})[change.deal_id] = change.sent_ns

        latencies: list[float] = []
        counts = {
            "duplicates": 0,
            "unexpected": 0,
            "lost": 0,
            "other_frames": 0,
            "snapshots": 0,
            "repeats_dropped": 0,
            "replay_requests": 0,
        }
        closed = 0
        received_anywhere: set[int] = set()
        for socket in self.sockets:
            expected = by_topic.get(socket["topic"], {})
            seen: set[int] = set()
            for deal_id, received_ns in socket["frames"]:
                if deal_id not in expected:
                    counts["unexpected"] += 1
                elif deal_id in seen:
                    counts["duplicates"] += 1
                else:
                    seen.add(deal_id)
                    latencies.append((received_ns - expected[deal_id]) / 1e6)
            counts["lost"] += len(expected) - len(seen)
            received_anywhere |= seen
            counts["other_frames"] += socket["other_frames"]
            counts["snapshots"] += socket["snapshots"]
            counts["repeats_dropped"] += socket["repeats"]
            counts["replay_requests"] += socket["replay_requests"]
            closed += socket["closed_early"] is not None
        counts["sockets_closed_early"] = closed
        counts["changes_no_socket_received"] = len(
            {change.deal_id for change in self.sent} - received_anywhere
        )
        return latencies, counts

    def frame_size(self) -> int:
        sizes = [size for socket in self.sockets for size in socket["sizes"]]
        return int(statistics.median(sizes)) if sizes else 0

    def summary(self) -> dict[str, Any]:
        latencies, counts = self.deliveries()
        delivered = len(latencies)
        first_sent = min(change.sent_ns for change in self.sent)
        last_received = max(
            (received for socket in self.sockets for _, received in socket["frames"]),
            default=first_sent,
        )
        span = (last_received - first_sent) / 1e9
        last_sent = max(change.sent_ns for change in self.sent)
        sending = (last_sent - first_sent) / 1e9

        server_cpu = sum(self.cpu.used(name) for name in self.socket_servers)
        result: dict[str, Any] = {
            "latency_ms": Summary.of(latencies, "ms").to_json() if latencies else None,
            "changes_sent": len(self.changes),
            "changes_rejected": len(self.changes) - len(self.sent),
            "response_statuses": dict(
                sorted(Counter(str(change.status) for change in self.changes).items())
            ),
            "change_rate_per_s": round((len(self.sent) - 1) / sending, 1)
            if sending > 0
            else None,
            "deliveries_expected": self.expected,
            "deliveries": delivered,
            **counts,
            "deliveries_per_s": round(delivered / span, 1) if span > 0 else None,
            "frame_size_median_chars": self.frame_size(),
            "window_s": round(self.cpu.seconds, 3),
            "server_cpu_s": {
                name: round(self.cpu.used(name), 3) for name in self.socket_servers
            },
            "server_cpu_us_per_delivery": round(server_cpu / delivered * 1e6, 1)
            if delivered
            else None,
            "client_cpu_share": {
                name: round(self.cpu.used(name) / self.cpu.seconds, 3)
                for name in self.client_names
            },
            "machine_cpu_busy": round(self.cpu.machine_busy, 3),
        }
        if self.writer is not None:
            result["writer_cpu_ms_per_change"] = round(
                self.cpu.used(self.writer) / max(1, len(self.sent)) * 1e3, 3
            )
            result["post_response_ms"] = Summary.of(
                [change.response_ns / 1e6 for change in self.changes], "ms"
            ).to_json()
        return result


async def wait_for_deliveries(fleet: Fleet, expected: int) -> int:
    """Poll the clients until ``expected`` frames arrived or arrivals stalled."""
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = await fleet.received()
        now = time.monotonic()
        if count >= expected:
            return count
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > STALL_SECONDS:
            return count
        await asyncio.sleep(POLL_SECONDS)
    return last_count


async def measure(
    fleet: Fleet,
    send: Callable[[], Awaitable[list[Change]]],
    processes: dict[str, int],
    socket_servers: list[str],
    writer: str | None = None,
) -> FanoutRun:
    """Send the changes, wait for their frames and sample CPU around both.

    ``processes`` names every process whose CPU is sampled, ``socket_servers``
    those among them that hold the sockets.
    """
    client_names = [f"client-{number}" for number in range(len(fleet.pids))]
    pids = {**processes, **dict(zip(client_names, fleet.pids, strict=True))}
    window = CpuWindow(pids)
    await fleet.reset()

    window.start()
    changes = await send()
    accepted = [change for change in changes if change.status in (0, 204)]
    expected = sum(fleet.per_topic[change.topic] for change in accepted)
    await wait_for_deliveries(fleet, expected)
    window.stop()

    sockets = await fleet.take()
    return FanoutRun(
        changes=changes,
        sockets=sockets,
        cpu=window,
        expected=expected,
        socket_servers=socket_servers,
        writer=writer,
        client_names=client_names,
    )
