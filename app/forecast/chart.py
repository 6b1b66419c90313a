"""The forecast-against-actual chart as plain SVG coordinates for the template."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WIDTH = 640
HEIGHT = 220
PADDING = 36


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str
    points: str


@dataclass(frozen=True)
class Chart:
    series: list[Series]
    top: Decimal
    first_day: str
    last_day: str
    width: int = WIDTH
    height: int = HEIGHT
    padding: int = PADDING


def build_chart(history: list[dict[str, Any]]) -> Chart | None:
    """Return the chart of snapshot rows (oldest first), or None with fewer than two."""
    if len(history) < 2:
        return None
    lines = {
        "Forecast": [row["closed_won"] + row["weighted"] for row in history],
        "Commit": [row["commit"] for row in history],
        "Closed won": [row["closed_won"] for row in history],
    }
    top = max(max(values) for values in lines.values()) or Decimal(1)
    inner_width = WIDTH - 2 * PADDING
    inner_height = HEIGHT - 2 * PADDING
    step = inner_width / (len(history) - 1)
    series = []
    for (name, values), css_class in zip(
        lines.items(), ("forecast", "commit", "actual"), strict=True
    ):
        points = " ".join(
            f"{PADDING + index * step:.1f},"
            f"{HEIGHT - PADDING - float(value / top) * inner_height:.1f}"
            for index, value in enumerate(values)
        )
        series.append(Series(name, css_class, points))
    return Chart(
        series=series,
        top=top,
        first_day=history[0]["taken_on"].isoformat(),
        last_day=history[-1]["taken_on"].isoformat(),
    )
