"""Back-test the month forecast on the Maven set and write its figures.

Run with ``python -m bench.forecast``. For each month of 2017 it forecasts
the closed-won amount from what was known at the month start, with the
calibrated probabilities and with the fixed stage probabilities (see
``app.forecast.backtest``), prints a table and writes
``bench/results/forecast-<UTC timestamp>.json``. It exits 1 when the
calibrated forecast's mean absolute error or mean absolute percentage
error is not lower than the fixed probabilities'.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from app.forecast.backtest import Summary, run
from app.forecast.probability import MIN_CLOSED_DEALS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MAVEN_FOLDER = "crm_sales_opportunities"
LIBRARIES = ("scikit-learn", "numpy", "scipy")


def maven_folder() -> Path:
    datasets = Path(os.environ.get("CRM_DATASETS", ROOT.parent / "shared" / "datasets"))
    return datasets / MAVEN_FOLDER


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def table(summary: Summary) -> str:
    lines = [
        f"{'month':<8} {'open':>5} {'actual':>11} {'ours':>11} {'fixed':>11} "
        f"{'ours APE':>9} {'fixed APE':>9}  model",
    ]
    for m in summary.months:
        lines.append(
            f"{m.month:%Y-%m} {m.open_deals:>7} {m.actual:>11,.0f} {m.ours:>11,.0f} "
            f"{m.fixed:>11,.0f} {percent(m.ours_percent_error):>9} "
            f"{percent(m.fixed_percent_error):>9}  "
            + (f"{m.trained_on} rows" if m.model_used else "fixed (too few closed)")
        )
    lines.append(f"MAE   ours {summary.ours_mae:,.0f}   fixed {summary.fixed_mae:,.0f}")
    lines.append(
        f"MAPE  ours {percent(summary.mape(True))}   "
        f"fixed {percent(summary.mape(False))}  (months with a closed-won amount)"
    )
    return "\n".join(lines)


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def missed_targets(summary: Summary) -> list[str]:
    """Return, in words, each error of ours that is not below the fixed one's."""
    missed = []
    if summary.ours_mae >= summary.fixed_mae:
        missed.append(
            f"MAE {summary.ours_mae:,.0f} is not below the fixed "
            f"{summary.fixed_mae:,.0f}"
        )
    ours_mape, fixed_mape = summary.mape(True), summary.mape(False)
    if ours_mape is None or fixed_mape is None or ours_mape >= fixed_mape:
        missed.append(
            f"MAPE {percent(ours_mape)} is not below the fixed {percent(fixed_mape)}"
        )
    return missed


def results(
    summary: Summary, seconds: float, started: dt.datetime
) -> dict[str, object]:
    missed = missed_targets(summary)
    return {
        "benchmark": "forecast-backtest",
        "started_at": started.isoformat(),
        "seconds": round(seconds, 2),
        "passed": not missed,
        "missed": missed,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "libraries": library_versions(),
        },
        "min_closed_deals": MIN_CLOSED_DEALS,
        "months": [
            {
                "month": f"{m.month:%Y-%m}",
                "open_deals": m.open_deals,
                "actual": round(m.actual, 2),
                "ours": round(m.ours, 2),
                "fixed": round(m.fixed, 2),
                "ours_abs_error": round(m.ours_error, 2),
                "fixed_abs_error": round(m.fixed_error, 2),
                "ours_percent_error": m.ours_percent_error,
                "fixed_percent_error": m.fixed_percent_error,
                "model_used": m.model_used,
                "training_rows": m.trained_on,
            }
            for m in summary.months
        ],
        "overall": {
            "ours_mae": round(summary.ours_mae, 2),
            "fixed_mae": round(summary.fixed_mae, 2),
            "ours_mape": summary.mape(True),
            "fixed_mape": summary.mape(False),
        },
    }


def main() -> int:
    folder = maven_folder()
    if not folder.is_dir():
        print(
            f"The Maven dataset folder {folder} was not found. Set CRM_DATASETS "
            f"to the folder that contains {MAVEN_FOLDER}/.",
            file=sys.stderr,
        )
        return 2
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    summary = run(folder)
    seconds = time.perf_counter() - clock
    print(table(summary))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"forecast-{started:%Y%m%dT%H%M%SZ}.json"
    figures = results(summary, seconds, started)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    for line in missed_targets(summary):
        print(f"target missed: {line}")
    print(f"results written to {path.relative_to(ROOT)}")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
