"""The calibrated forecast against fixed stage probabilities on the Maven set."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from app.forecast.backtest import load_maven, run, run_quarters
from app.forecast.probability import (
    FEATURES,
    MIN_CLOSED_DEALS,
    WinModel,
    WinRates,
    features,
    open_at,
    train,
)
from tests.conftest import datasets_dir

pytestmark = pytest.mark.datasets


@pytest.fixture(scope="module")
def maven():
    return datasets_dir("crm_sales_opportunities")


def test_backtest_beats_fixed_probabilities(maven) -> None:
    summary = run(maven)

    assert [m.month.month for m in summary.months] == list(range(1, 13))
    assert summary.ours_mae < summary.fixed_mae
    ours_mape = summary.mape(True)
    fixed_mape = summary.mape(False)
    assert ours_mape is not None and fixed_mape is not None
    assert ours_mape < fixed_mape


def test_backtest_months_without_history_use_fixed(maven) -> None:
    summary = run(maven)

    for month in summary.months:
        if not month.model_used:
            assert month.ours == pytest.approx(month.fixed)
    assert any(month.model_used for month in summary.months)


def test_model_sees_no_later_closes(maven) -> None:
    deals = load_maven(maven)
    start = dt.date(2017, 6, 1)
    known = [deal for deal in deals if deal.engaged < start]
    later = [
        deal
        if deal.closed is None or deal.closed < start
        else type(deal)(**{**deal.__dict__, "won": not deal.won})
        for deal in known
    ]

    first = train(1, known, start)
    flipped = train(1, later, start)

    assert first is not None and flipped is not None
    assert first.to_json() == flipped.to_json()


def test_stored_model_predicts_like_sklearn(maven) -> None:
    deals = load_maven(maven)
    start = dt.date(2017, 9, 1)
    model = train(1, deals, start)
    assert model is not None
    rebuilt = WinModel.from_json(model.to_json())
    assert rebuilt is not None
    rates = WinRates.of([d for d in deals if d.closed and d.closed < start])
    rows = [features(deal, start, rates) for deal in open_at(deals, start)[:50]]

    assert np.allclose(rebuilt.predict(rows), model.predict(rows))
    assert len(rows[0]) == len(FEATURES)
    assert all(0.0 <= p <= 1.0 for p in model.predict(rows))


def test_too_little_history_gives_no_model(maven) -> None:
    deals = load_maven(maven)
    closed = sorted(
        (deal for deal in deals if deal.closed is not None), key=lambda d: d.closed
    )
    few = closed[: MIN_CLOSED_DEALS - 1]
    cutoff = dt.date(2018, 1, 1)

    assert train(1, few, cutoff) is None


def test_quarter_chance_by_end_beats_one_month(maven) -> None:
    results = run_quarters(maven)

    def mae(pick) -> float:
        return sum(abs(pick(r) - r.actual) for r in results) / len(results)

    assert [r.quarter.month for r in results] == [4, 7, 10]
    for result in results:
        assert result.by_end > result.one_month
    assert mae(lambda r: r.by_end) < mae(lambda r: r.one_month)
    assert mae(lambda r: r.by_end) < mae(lambda r: r.fixed)
