"""The lead-scoring model meets its targets on a Leads.csv holdout.

The figures come from the same training call the worker makes, measured on
a stratified 20 % holdout with a fixed seed, beside the naive Bayes
baseline of ``bench.models``.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring import model as lead_model
from bench.models import at_arrival, check, load_leads, measure
from tests.conftest import datasets_dir

pytestmark = pytest.mark.datasets


@pytest.fixture(scope="module")
def leads() -> tuple[list[dict[str, str | None]], list[int]]:
    return load_leads(datasets_dir("leads", "Leads.csv"))


@pytest.fixture(scope="module")
def all_columns(leads: Any) -> dict[str, Any]:
    return measure(*leads)


@pytest.fixture(scope="module")
def arrival(leads: Any) -> dict[str, Any]:
    records, outcomes = leads
    return measure([at_arrival(record) for record in records], outcomes)


def test_all_columns_meet_targets(all_columns: dict[str, Any]) -> None:
    ours = all_columns["model"]

    assert ours["roc_auc"] >= 0.97
    assert ours["brier"] <= 0.05
    assert ours["ece"] <= 0.05


def test_at_arrival_meets_targets(arrival: dict[str, Any]) -> None:
    ours = arrival["model"]

    assert ours["roc_auc"] >= 0.86
    assert ours["ece"] <= 0.05


def test_model_beats_baseline_on_every_figure(
    all_columns: dict[str, Any], arrival: dict[str, Any]
) -> None:
    assert check("all columns", all_columns) == []
    assert check("at arrival", arrival) == []


def test_holdout_is_stratified_fifth(leads: Any, all_columns: dict[str, Any]) -> None:
    records, outcomes = leads
    holdout = all_columns["model"]

    assert holdout["count"] == round(len(records) * 0.2)
    assert (
        abs(holdout["positives"] / holdout["count"] - sum(outcomes) / len(outcomes))
        < 0.005
    )


def test_explanations_name_fields_and_points(leads: Any) -> None:
    records, outcomes = leads
    fitted = lead_model.fit(records[:3000], outcomes[:3000])

    factors = fitted.explain(records[3001])

    assert 0 < len(factors) <= 3
    assert all(factor.column in fitted.columns for factor in factors)
    assert all(factor.points != 0 for factor in factors)
    points = [abs(factor.points) for factor in factors]
    assert points == sorted(points, reverse=True)


def test_expected_calibration_error_of_perfect_bins() -> None:
    outcomes = [0, 0, 1, 1]

    assert lead_model.expected_calibration_error(outcomes, [0.0, 0.0, 1.0, 1.0]) == 0.0
    assert lead_model.expected_calibration_error(outcomes, [0.5] * 4) == 0.0
    assert lead_model.expected_calibration_error([1, 1], [0.25, 0.25]) == 0.75


def test_fit_rejects_too_few_outcomes() -> None:
    records = [{"Lead Source": "Google"}] * 20

    with pytest.raises(ValueError, match="at least 5 converted"):
        lead_model.fit(records, [0] * 18 + [1] * 2)
