"""Figures of the reconnect storm, from what each page recorded.

All times are CLOCK_MONOTONIC ns from the client processes and the bench.
``ready_ns`` is when the restarted server first returned 200 for /health, and the
per-page times are measured from it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from bench.stats import percentile

STATISTICS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def milliseconds(samples_ns: list[int], missing: int = 0) -> dict[str, Any] | None:
    """Summarize durations in ms, with ``missing`` pages counted as never.

    A percentile that falls among the missing pages is None, so p50 of a run
    where half the pages never caught up is reported as not reached.
    """
    if not samples_ns and not missing:
        return None
    ordered = sorted(sample / 1e6 for sample in samples_ns) + [math.inf] * missing
    summary: dict[str, Any] = {"unit": "ms", "samples": len(samples_ns)}
    for name, fraction in STATISTICS:
        value = percentile(ordered, fraction)
        summary[name] = round(value, 3) if value != math.inf else None
    if samples_ns:
        summary["mean"] = round(sum(samples_ns) / len(samples_ns) / 1e6, 3)
    if missing:
        summary["missing"] = missing
    return summary


def first_open(page: dict[str, Any]) -> tuple[int, int] | None:
    """Return (start, end) ns of the page's first successful connect."""
    for started, ended, outcome in page["attempts"]:
        if outcome == "open":
            return started, ended
    return None


def missing_events(page: dict[str, Any]) -> int:
    return sum(
        max(0, target - page["positions"].get(topic, 0))
        for topic, target in page["targets"].items()
    )


def resumed_after_kill(page: dict[str, Any], killed_ns: int) -> bool:
    """Return whether a connection opened after the kill has sent ``#ready``."""
    ready = page["ready_ns"]
    return ready is not None and page["opened_ns"] > killed_ns and ready > killed_ns


def deliveries(pages: list[dict[str, Any]], killed_ns: int) -> dict[str, Any]:
    """Count caught-up pages, lost and repeated events, and protocol frames.

    A page that resumed on a new connection (it got ``#ready``) but still
    lacks events is lost data. A page that has not resumed yet is behind.
    """
    lost = behind = 0
    for page in pages:
        if resumed_after_kill(page, killed_ns):
            lost += missing_events(page)
        else:
            behind += missing_events(page)
    return {
        "clients_caught_up": sum(page["caught_up_ns"] is not None for page in pages),
        "clients_not_caught_up": sum(page["caught_up_ns"] is None for page in pages),
        "lost": lost,
        "events_behind_at_deadline": behind,
        "duplicated": sum(page["repeats"] for page in pages),
        "events_applied": sum(page["applied"] for page in pages),
        "gaps_seen": sum(page["gaps"] for page in pages),
        "replay_requests": sum(page["replay_requests"] for page in pages),
        "snapshots": sum(page["snapshots"] for page in pages),
        "presence_frames": sum(page["other_frames"] for page in pages),
        "closed_for_good": sum(page["final_code"] is not None for page in pages),
        "close_codes": dict(
            Counter(str(code) for page in pages for _, code in page["closes"])
        ),
    }


def timings(
    pages: list[dict[str, Any]], ready_ns: int, killed_ns: int, ended_ns: int
) -> dict[str, Any]:
    """Per-page times: catch-up, the backoff's wait, the server's share.

    ``ended_ns`` is when the bench stopped waiting. Handshakes still in
    progress then are reported apart, with how long they had waited.
    """
    caught_up = [page["caught_up_ns"] for page in pages if page["caught_up_ns"]]
    missing = len(pages) - len(caught_up)
    first_after_ready, waited, handshakes, resumed = [], [], [], []
    for page in pages:
        later = [start for start, _, _ in page["attempts"] if start >= ready_ns]
        if later:
            first_after_ready.append(later[0] - ready_ns)
        opened = first_open(page)
        if opened is None:
            continue
        waited.append(opened[0] - ready_ns)
        handshakes.append(opened[1] - opened[0])
        if page["caught_up_ns"] is not None:
            resumed.append(page["caught_up_ns"] - opened[0])

    closed = [page["closes"][0][0] - killed_ns for page in pages if page["closes"]]
    pending = [
        ended_ns - page["connecting_ns"]
        for page in pages
        if page["connecting_ns"] is not None
    ]
    last_catch_up = max(caught_up, default=None)
    return {
        "all_caught_up_s": round((last_catch_up - ready_ns) / 1e9, 3)
        if last_catch_up is not None and not missing
        else None,
        "catch_up_ms": milliseconds(
            [moment - ready_ns for moment in caught_up], missing
        ),
        "caught_up_within_5_s": sum(moment - ready_ns <= 5e9 for moment in caught_up),
        "close_seen_after_kill_ms": milliseconds(closed),
        "first_attempt_after_ready_ms": milliseconds(first_after_ready),
        "reconnect_wait_ms": milliseconds(waited),
        "handshake_ms": milliseconds(handshakes),
        "handshakes_pending_at_deadline": len(pending),
        "pending_handshake_ms": milliseconds(pending),
        "connect_to_caught_up_ms": milliseconds(resumed),
        "last_connect_after_ready_s": round(max(waited) / 1e9, 3) if waited else None,
    }


def attempts(pages: list[dict[str, Any]], ready_ns: int) -> dict[str, Any]:
    """Count connect attempts by outcome, before and after the server was ready."""
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    failed_pages = 0
    failures_before_open: Counter[int] = Counter()
    for page in pages:
        failed_late = False
        for started, _, outcome in page["attempts"]:
            if started < ready_ns:
                before[outcome] += 1
            elif outcome != "open":
                after[outcome] += 1
                failed_late = True
        failed_pages += failed_late
        outcomes = [outcome for _, _, outcome in page["attempts"]]
        if "open" in outcomes:
            failures_before_open[outcomes.index("open")] += 1
    return {
        "attempts": sum(len(page["attempts"]) for page in pages),
        "attempts_before_ready": dict(before),
        "connect_failures_after_ready": dict(after),
        "clients_with_failures_after_ready": failed_pages,
        "failed_attempts_before_reconnect": {
            str(failures): count
            for failures, count in sorted(failures_before_open.items())
        },
    }
