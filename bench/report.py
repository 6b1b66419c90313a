"""The results file: figures, targets, ratios to baselines, and a text summary."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from bench.pages import Page
from bench.stats import Summary, Target

BOARD_PAGE_TARGET = Target("p95", 30.0, "ms")
LATENCY_TARGET = Target("p99", 50.0, "ms")
# Server CPU per delivery of a minimal Litestar fan-out (one psubscribe,
# send_text per socket) under uvicorn's websockets-sansio, with 2,000 sockets
# on 2 cores, as pyproject.toml notes. This run does not measure it again.
REFERENCE_US_PER_DELIVERY = 17.0
FANOUT_RUNS = ("live_board", "live_heavy", "live_heavy_ceiling")
MINIMAL_RUNS = (
    "minimal_fanout_board",
    "minimal_fanout_board_uncompressed",
    "minimal_fanout_heavy",
)


def page_entry(page: Page, health: Summary, target: Target | None) -> dict[str, Any]:
    summary = Summary.of(page.samples_ms, "ms")
    entry: dict[str, Any] = {
        "path": page.path,
        "response_bytes": page.size_bytes,
        **summary.to_json(),
        "ratio_to_health": summary.ratios(health),
    }
    if target is not None:
        entry["target"] = target.check(summary.value(target.statistic))
    return entry


def latency_ratios(
    run: dict[str, Any], baseline: dict[str, Any] | None
) -> dict[str, float]:
    if not run["latency_ms"] or not baseline or not baseline["latency_ms"]:
        return {}
    return {
        name: round(run["latency_ms"][name] / baseline["latency_ms"][name], 2)
        for name in ("p50", "p95", "p99", "max", "mean")
        if baseline["latency_ms"][name] > 0
    }


def fanout_entry(
    run: dict[str, Any],
    minimal: dict[str, Any] | None,
    redis: Summary,
    target: Target | None,
) -> dict[str, Any]:
    entry = dict(run)
    entry["lost_target"] = {
        "limit": 0,
        "measured": run["lost"],
        "passed": run["lost"] == 0,
    }
    if target is not None and run["latency_ms"]:
        entry["target"] = target.check(run["latency_ms"][target.statistic])
    if minimal is not None:
        entry["latency_ratio_to_minimal_fanout"] = latency_ratios(run, minimal)
    if run["latency_ms"]:
        entry["latency_ratio_to_redis_round_trip"] = {
            name: round(run["latency_ms"][name] / redis.value(name), 1)
            for name in ("p50", "p95", "p99")
        }
    return entry


def ratio(value: float | None, baseline: float | None) -> float | None:
    return round(value / baseline, 2) if value and baseline else None


def cpu_entry(run: dict[str, Any], minimal: dict[str, Any] | None) -> dict[str, Any]:
    ours = run["server_cpu_us_per_delivery"]
    entry: dict[str, Any] = {
        "us_per_delivery": ours,
        "deliveries_per_s": run["deliveries_per_s"],
        "reference_us_per_delivery": REFERENCE_US_PER_DELIVERY,
        "ratio_to_reference": ratio(ours, REFERENCE_US_PER_DELIVERY),
    }
    if minimal is not None:
        baseline = minimal["server_cpu_us_per_delivery"]
        entry["minimal_fanout_us_per_delivery"] = baseline
        entry["ratio_to_minimal_fanout"] = ratio(ours, baseline)
    return entry


def measurements(
    dataset: dict[str, Any],
    redis: Summary,
    pages: dict[str, Page],
    board: dict[str, Any],
    board_minimal: dict[str, Any],
    board_minimal_plain: dict[str, Any],
    heavy: dict[str, Any],
    ceiling: dict[str, Any],
    heavy_minimal: dict[str, Any],
    queries: dict[str, Any],
    storm: dict[str, Any],
    storm_minimal: dict[str, Any],
) -> dict[str, Any]:
    health = Summary.of(pages["health"].samples_ms, "ms")
    result: dict[str, Any] = {
        "board_page": page_entry(pages["board"], health, BOARD_PAGE_TARGET),
        "column_load_more": page_entry(pages["column_load_more"], health, None),
    }
    if "ticket_board" in pages:
        result["ticket_board"] = page_entry(pages["ticket_board"], health, None)
    result["live_board"] = fanout_entry(board, board_minimal, redis, LATENCY_TARGET)
    result["live_heavy"] = fanout_entry(heavy, heavy_minimal, redis, None)
    result["live_heavy_ceiling"] = fanout_entry(ceiling, None, redis, None)
    board_cpu = cpu_entry(board, board_minimal)
    board_cpu["minimal_fanout_uncompressed_us_per_delivery"] = board_minimal_plain[
        "server_cpu_us_per_delivery"
    ]
    result["server_cpu_per_delivery"] = {
        "live_board": board_cpu,
        "live_heavy": cpu_entry(heavy, heavy_minimal),
        "live_heavy_ceiling": cpu_entry(ceiling, None),
    }
    result["queries"] = queries
    storm["ratio_to_minimal"] = storm_ratio(storm, storm_minimal)
    result["reconnect_storm"] = storm
    return {
        "dataset": dataset,
        "measurements": result,
        "baselines": {
            "health": {"path": "/health", **health.to_json()},
            "redis_publish_to_receive": redis.to_json(),
            "minimal_fanout_board": board_minimal,
            "minimal_fanout_board_uncompressed": board_minimal_plain,
            "minimal_fanout_heavy": heavy_minimal,
            "minimal_reconnect_storm": storm_minimal,
        },
    }


def storm_ratio(storm: dict[str, Any], minimal: dict[str, Any]) -> dict[str, Any]:
    """Compare the storm with the minimal app's, run with the same pages."""

    def ratio(ours: float | None, theirs: float | None) -> float | None:
        if ours is None or not theirs:
            return None
        return round(ours / theirs, 2)

    return {
        "all_caught_up": ratio(storm["all_caught_up_s"], minimal["all_caught_up_s"]),
        "server_cpu_per_client": ratio(
            storm["server_cpu_ms_per_client"], minimal["server_cpu_ms_per_client"]
        ),
        "first_connect_server_cpu": ratio(
            storm["first_connect"]["server_cpu_ms_per_connect"],
            minimal["first_connect"]["server_cpu_ms_per_connect"],
        ),
    }


def write(folder: Path, result: dict[str, Any], started_at: dt.datetime) -> Path:
    """Write ``<UTC timestamp>.json``, overwrite ``latest.json``, return the first."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    path = folder / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    (folder / "latest.json").write_text(text)
    return path


def verdict(target: dict[str, Any] | None) -> str:
    if not target:
        return ""
    word = "pass" if target["passed"] else "FAIL"
    return f"  [{word}: {target['statistic']} <= {target['limit']:g} {target['unit']}]"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Return a few lines with the main figures, for the terminal."""
    figures = result["measurements"]
    lines = []
    for name in ("board_page", "column_load_more", "ticket_board"):
        if name in figures:
            page = figures[name]
            ratio = page["ratio_to_health"].get("p95", 0)
            lines.append(
                f"{name:<18} p50 {page['p50']:7.2f}  p95 {page['p95']:7.2f}  "
                f"p99 {page['p99']:7.2f} ms  x{ratio:.1f} /health p95"
                f"{verdict(page.get('target'))}"
            )
    for name in FANOUT_RUNS:
        run = figures[name]
        latency = run["latency_ms"] or {"p50": 0, "p95": 0, "p99": 0}
        lines.append(
            f"{name:<18} p50 {latency['p50']:7.2f}  p95 {latency['p95']:7.2f}  "
            f"p99 {latency['p99']:7.2f} ms  lost {run['lost']}  "
            f"{run['server_cpu_us_per_delivery']} us/delivery  "
            f"{run['deliveries_per_s']} deliveries/s{verdict(run.get('target'))}"
        )
    event = figures["queries"]["live_event"]
    lines.append(
        f"{'queries per event':<18} {event['statements_per_unit']} statements, "
        f"{event['round_trip_per_unit']} round trips"
    )
    lines.append(storm_line(figures["reconnect_storm"]))
    lines.append(
        storm_line(result["baselines"]["minimal_reconnect_storm"], "minimal storm")
    )
    lines.extend(f"problem: {problem}" for problem in result["problems"])
    return lines


def storm_line(storm: dict[str, Any], label: str = "reconnect storm") -> str:
    caught_up = storm["all_caught_up_s"]
    finished = (
        f"all caught up after {caught_up:.1f} s"
        if caught_up is not None
        else f"{storm['clients_not_caught_up']} not caught up after "
        f"{storm['limits']['deadline_s']:g} s"
    )
    p50 = storm["catch_up_ms"]["p50"] if storm["catch_up_ms"] else None
    median = f"{p50 / 1e3:.1f} s" if p50 is not None else "not reached"
    return (
        f"{label:<18} {storm['clients']} pages, {finished}, "
        f"p50 {median}  lost {storm['lost']}  duplicated {storm['duplicated']}"
        f"{verdict(storm['target'])}"
    )


def problems(result: dict[str, Any]) -> list[str]:
    """List what makes a run's figures suspect: losses, rejections, server errors."""
    found = []
    figures = result["measurements"]
    runs = {
        **{name: figures[name] for name in FANOUT_RUNS},
        **{name: result["baselines"][name] for name in MINIMAL_RUNS},
    }
    for name, run in runs.items():
        if run["lost"]:
            found.append(f"{name}: {run['lost']} deliveries lost")
        if run["changes_rejected"]:
            found.append(
                f"{name}: {run['changes_rejected']} changes rejected, "
                f"statuses {run['response_statuses']}"
            )
    storm = figures["reconnect_storm"]
    for name in ("lost", "duplicated", "closed_for_good"):
        if storm[name]:
            found.append(f"reconnect_storm: {name} {storm[name]}")
    stopping = storm["server_log_errors"]["while_stopping"]
    for name, log in result["server_logs"].items():
        if not log["errors"]:
            continue
        problem = f"server {name}: {log['errors']} ERROR lines in its log"
        if name == "storm-restarted" and stopping:
            problem += f", {stopping} of them while it was stopped after the storm"
        found.append(problem)
    return found
