"""Percentile summaries of samples, ratios to a baseline and target checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

STATISTICS = ("p50", "p95", "p99", "max", "mean")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of samples sorted in ascending order."""
    if not ordered:
        raise ValueError("percentile of no samples")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    unit: str
    samples: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float], unit: str) -> Summary:
        ordered = sorted(samples)
        return cls(
            unit=unit,
            samples=len(ordered),
            p50=percentile(ordered, 0.50),
            p95=percentile(ordered, 0.95),
            p99=percentile(ordered, 0.99),
            max=ordered[-1],
            mean=sum(ordered) / len(ordered),
        )

    def value(self, statistic: str) -> float:
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}")
        return float(getattr(self, statistic))

    def ratios(self, baseline: Summary) -> dict[str, float]:
        """Divide each statistic by the same statistic of ``baseline``."""
        return {
            name: round(self.value(name) / baseline.value(name), 2)
            for name in STATISTICS
            if baseline.value(name) > 0
        }

    def to_json(self) -> dict[str, Any]:
        return {
            name: round(value, 3) if isinstance(value, float) else value
            for name, value in asdict(self).items()
        }


@dataclass(frozen=True)
class Target:
    """A product target: ``statistic`` of a measurement must not exceed ``limit``."""

    statistic: str
    limit: float
    unit: str

    def check(self, value: float) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "limit": self.limit,
            "unit": self.unit,
            "measured": round(value, 3),
            "passed": value <= self.limit,
        }
