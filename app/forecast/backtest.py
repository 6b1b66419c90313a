"""Back-test of the month forecast on the Maven "CRM + Sales Opportunities" files.

For each month, the deals known at its start are those engaged before it.
A deal closed before the month start is history, and any other is open,
in the stage it was in then. The files give only engage and close dates, so an
open deal is in "Engaging" from its engage date until it closes, which is
also the last open stage the model assumes for closed deals. Prospecting
deals have no engage date and never count.

Both forecasts weight the same open deals by amount, which is the product's
list price, as the Maven import sets it for open deals. Ours uses the
probabilities of ``app.forecast.probability``, trained only on what was
known at the month start. The other uses the fixed probability that the
Maven import gives the stage. The actual figure is the month's
closed-won amount (``close_value`` of the deals won that month).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from app.forecast.probability import (
    DealFacts,
    fixed_probabilities,
    next_month,
    open_at,
    probabilities,
    train,
    weighted_total,
)
from app.imports.maven import STAGES, normalise

# The pipeline id the back-test gives the Maven deals; nothing is stored.
PIPELINE_ID = 1


@dataclass(frozen=True)
class MonthResult:
    month: dt.date
    actual: float
    ours: float
    fixed: float
    open_deals: int
    trained_on: int
    model_used: bool

    @property
    def ours_error(self) -> float:
        return abs(self.ours - self.actual)

    @property
    def fixed_error(self) -> float:
        return abs(self.fixed - self.actual)

    @property
    def ours_percent_error(self) -> float | None:
        return 100 * self.ours_error / self.actual if self.actual else None

    @property
    def fixed_percent_error(self) -> float | None:
        return 100 * self.fixed_error / self.actual if self.actual else None


@dataclass(frozen=True)
class Summary:
    months: list[MonthResult]

    @property
    def ours_mae(self) -> float:
        return sum(m.ours_error for m in self.months) / len(self.months)

    @property
    def fixed_mae(self) -> float:
        return sum(m.fixed_error for m in self.months) / len(self.months)

    def mape(self, ours: bool) -> float | None:
        """Mean absolute percentage error over the months with a closed-won amount.

        Months with nothing won have no percentage error and are left out.
        """
        errors = [
            m.ours_percent_error if ours else m.fixed_percent_error for m in self.months
        ]
        known = [error for error in errors if error is not None]
        return sum(known) / len(known) if known else None


def load_maven(folder: Path) -> list[DealFacts]:
    """Read sales_pipeline.csv and products.csv into DealFacts, ids by position."""
    prices = {}
    product_ids = {}
    with (folder / "products.csv").open(newline="", encoding="utf-8") as file:
        for number, row in enumerate(csv.DictReader(file), start=1):
            prices[normalise(row["product"])] = float(row["sales_price"])
            product_ids[normalise(row["product"])] = number
    stage_ids = {spec.name: number for number, spec in enumerate(STAGES, start=1)}
    stage_probability = {spec.name: spec.probability for spec in STAGES}
    last_open = "Engaging"
    owners: dict[str, int] = {}
    accounts: dict[str, int] = {}

    deals = []
    with (folder / "sales_pipeline.csv").open(newline="", encoding="utf-8") as file:
        for number, row in enumerate(csv.DictReader(file), start=1):
            if not row["engage_date"]:
                continue
            engaged = dt.date.fromisoformat(row["engage_date"])
            closed = (
                dt.date.fromisoformat(row["close_date"]) if row["close_date"] else None
            )
            product = normalise(row["product"])
            owner = owners.setdefault(row["sales_agent"], len(owners) + 1)
            account = (
                accounts.setdefault(row["account"], len(accounts) + 1)
                if row["account"]
                else None
            )
            won = row["deal_stage"] == "Won"
            deals.append(
                DealFacts(
                    id=number,
                    pipeline=PIPELINE_ID,
                    stage=stage_ids[last_open],
                    stage_probability=stage_probability[last_open],
                    amount=prices.get(product, 0.0),
                    engaged=engaged,
                    stage_entered=engaged,
                    owner=owner,
                    product=product_ids.get(product),
                    account=account,
                    closed=closed,
                    won=won,
                    won_amount=float(row["close_value"] or 0) if won else 0.0,
                )
            )
    return deals


def forecast_month(deals: list[DealFacts], start: dt.date) -> MonthResult:
    """Forecast the month beginning on ``start`` from what was known then."""
    end = next_month(start)
    actual = sum(
        deal.won_amount
        for deal in deals
        if deal.won and deal.closed is not None and start <= deal.closed < end
    )
    known = [deal for deal in deals if deal.engaged < start]
    pipeline = open_at(known, start)
    model = train(PIPELINE_ID, known, start)
    ours = weighted_total(pipeline, probabilities(model, pipeline, known, start))
    fixed = weighted_total(pipeline, fixed_probabilities(pipeline))
    return MonthResult(
        month=start,
        actual=actual,
        ours=ours,
        fixed=fixed,
        open_deals=len(pipeline),
        trained_on=model.training_rows if model else 0,
        model_used=model is not None,
    )


def run(folder: Path, year: int = 2017) -> Summary:
    deals = load_maven(folder)
    months = [forecast_month(deals, dt.date(year, month, 1)) for month in range(1, 13)]
    return Summary(months)


@dataclass(frozen=True)
class QuarterResult:
    """One quarter's closed-won amount against three forecasts made at its start.

    ``by_end`` weights each open deal with its chance of a win by the
    quarter's end, ``one_month`` with its chance of a win within a month
    (what the forecast applied to quarters before), and ``fixed`` with the
    stage's fixed probability.
    """

    quarter: dt.date
    actual: float
    by_end: float
    one_month: float
    fixed: float


def forecast_quarter(deals: list[DealFacts], start: dt.date) -> QuarterResult:
    """Forecast the quarter beginning on ``start`` from what was known then.

    Like ``forecast_month``, only deals engaged before ``start`` count, so
    deals engaged and won within the quarter are missing from every
    forecast.
    """
    end = next_month(next_month(next_month(start)))
    actual = sum(
        deal.won_amount
        for deal in deals
        if deal.won and deal.closed is not None and start <= deal.closed < end
    )
    known = [deal for deal in deals if deal.engaged < start]
    pipeline = open_at(known, start)
    model = train(PIPELINE_ID, known, start)
    return QuarterResult(
        quarter=start,
        actual=actual,
        by_end=weighted_total(
            pipeline, probabilities(model, pipeline, known, start, end)
        ),
        one_month=weighted_total(
            pipeline, probabilities(model, pipeline, known, start)
        ),
        fixed=weighted_total(pipeline, fixed_probabilities(pipeline)),
    )


def run_quarters(folder: Path, year: int = 2017) -> list[QuarterResult]:
    """Forecast the quarters of ``year`` whose start has a trained model."""
    deals = load_maven(folder)
    return [forecast_quarter(deals, dt.date(year, month, 1)) for month in (4, 7, 10)]
