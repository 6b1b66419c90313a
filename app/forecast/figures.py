"""Forecast periods and the figures of a period, from deal facts and probabilities.

For a period and a set of deals:

- closed won: the amount of deals won during the period (the day they
  entered a won stage);
- commit: closed won plus the amount of open deals expected in the period
  whose forecast category is commit;
- best case: commit plus the amount of the open deals expected in the
  period whose category is best case;
- weighted pipeline: the sum of amount times probability of the open deals
  expected in the period, and forecast = closed won + weighted pipeline.
  The caller passes each deal's probability of being won by the period's
  end (``app.forecast.service.deal_chances`` with ``until``).

An open deal is expected in the period of its close date. A deal without a
close date, or whose close date has passed, is expected in the period
containing ``today``: it is still open, so it can close now at the earliest.
An open deal in the omitted category counts in no figure.

A deal's forecast category is the one set on it, or else the one its
stage's fixed probability implies (``stage_category``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from app.errors import FieldError
from app.forecast.probability import DealFacts, month_start, next_month

FORECAST_CATEGORIES = ("pipeline", "best_case", "commit", "omitted")
CATEGORY_LABELS = {
    "pipeline": "Pipeline",
    "best_case": "Best case",
    "commit": "Commit",
    "omitted": "Omitted",
}
# A deal without a category of its own is commit when its stage's fixed
# probability is at least COMMIT_PROBABILITY, best case when it is at least
# BEST_CASE_PROBABILITY, and pipeline below that.
COMMIT_PROBABILITY = 70
BEST_CASE_PROBABILITY = 40
PeriodKind = Literal["month", "quarter"]
PERIOD_PATTERN = re.compile(r"(\d{4})-(?:(0[1-9]|1[0-2])|Q([1-4]))")


@dataclass(frozen=True, order=True)
class Period:
    start: dt.date
    kind: PeriodKind

    @property
    def end(self) -> dt.date:
        """The first day after the period."""
        end = next_month(self.start)
        if self.kind == "quarter":
            end = next_month(next_month(end))
        return end

    @property
    def key(self) -> str:
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start:%Y-%m}"

    @property
    def label(self) -> str:
        if self.kind == "quarter":
            return f"Q{(self.start.month - 1) // 3 + 1} {self.start.year}"
        return f"{self.start:%B %Y}"

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end

    def months(self) -> list[Period]:
        months = [Period(self.start, "month")]
        while months[-1].end < self.end:
            months.append(Period(months[-1].end, "month"))
        return months

    def shifted(self, steps: int) -> Period:
        """Return the period ``steps`` periods later (earlier when negative)."""
        size = 3 if self.kind == "quarter" else 1
        index = self.start.year * 12 + self.start.month - 1 + steps * size
        return Period(dt.date(index // 12, index % 12 + 1, 1), self.kind)

    @classmethod
    def containing(cls, day: dt.date, kind: PeriodKind) -> Period:
        start = month_start(day)
        if kind == "quarter":
            start = start.replace(month=(start.month - 1) // 3 * 3 + 1)
        return cls(start, kind)

    @classmethod
    def parse(cls, text: str | None, today: dt.date) -> Period:
        """Parse "2026-12" (a month) or "2026-Q4" (a quarter); empty is this quarter."""
        if not text:
            return cls.containing(today, "quarter")
        match = PERIOD_PATTERN.fullmatch(text.strip())
        if match is None:
            raise FieldError(
                "period", text, "must be a month like 2026-12 or a quarter like 2026-Q4"
            )
        year = int(match.group(1))
        if match.group(3):
            return cls(dt.date(year, (int(match.group(3)) - 1) * 3 + 1, 1), "quarter")
        return cls(dt.date(year, int(match.group(2)), 1), "month")


@dataclass
class Figures:
    closed_won: Decimal = Decimal(0)
    commit: Decimal = Decimal(0)
    best_case: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)
    open_deals: int = 0
    won_deals: int = 0

    @property
    def forecast(self) -> Decimal:
        return self.closed_won + self.weighted


def stage_category(stage_probability: int) -> str:
    """Return the forecast category a stage's fixed probability implies."""
    if stage_probability >= COMMIT_PROBABILITY:
        return "commit"
    if stage_probability >= BEST_CASE_PROBABILITY:
        return "best_case"
    return "pipeline"


def forecast_category(deal: DealFacts) -> str:
    """Return the deal's own category, else the one its stage implies."""
    return deal.forecast_category or stage_category(deal.stage_probability)


def expected_period_day(deal: DealFacts, today: dt.date) -> dt.date:
    """Return the day an open deal is expected to close, for bucketing."""
    if deal.expected_close is None or deal.expected_close < today:
        return today
    return deal.expected_close


def money(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))


def add_deal(
    figures: Figures,
    deal: DealFacts,
    chance: float,
    period: Period,
    today: dt.date,
) -> None:
    """Add ``deal`` to ``figures`` when it falls in ``period``."""
    if deal.closed is not None:
        if deal.won and period.contains(deal.closed):
            figures.closed_won += money(deal.won_amount)
            figures.commit += money(deal.won_amount)
            figures.best_case += money(deal.won_amount)
            figures.won_deals += 1
        return
    if not period.contains(expected_period_day(deal, today)):
        return
    category = forecast_category(deal)
    if category == "omitted":
        return
    amount = money(deal.amount)
    figures.open_deals += 1
    if category in ("commit", "best_case"):
        figures.best_case += amount
    if category == "commit":
        figures.commit += amount
    figures.weighted += money(deal.amount * chance)


def group_figures(
    deals: Iterable[DealFacts],
    chances: dict[int, float],
    period: Period,
    today: dt.date,
    key: Callable[[DealFacts], int | None],
) -> dict[int | None, Figures]:
    """Return the period's figures per group, the value ``key`` gives each deal."""
    groups: dict[int | None, Figures] = {}
    for deal in deals:
        figures = groups.setdefault(key(deal), Figures())
        add_deal(figures, deal, chances.get(deal.id, 0.0), period, today)
    return groups


def total_figures(
    deals: Iterable[DealFacts],
    chances: dict[int, float],
    period: Period,
    today: dt.date,
) -> Figures:
    figures = Figures()
    for deal in deals:
        add_deal(figures, deal, chances.get(deal.id, 0.0), period, today)
    return figures
