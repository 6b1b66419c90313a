"""Win probability by the end of a period, and activity features, on built histories."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import replace

import pytest

from app.forecast.figures import Period, total_figures
from app.forecast.probability import (
    FEATURES,
    DealFacts,
    WinRates,
    closed_before,
    describe_activity,
    features,
    next_month,
    open_at,
    probabilities,
    train,
    training_set,
)

WIN_HAZARD = 0.2
LOSS_HAZARD = 0.1
CUTOFF = dt.date(2026, 1, 1)


def constant_hazard_history(seed: int = 7) -> list[DealFacts]:
    """Build 24 months of deals that each month win with 20 % and lose with 10 %.

    A hundred deals engage on the 5th of every month of 2024 and 2025. Each
    month from the next on, a deal still open is won on the 10th with
    chance WIN_HAZARD, else lost with chance LOSS_HAZARD. Deals left open
    at CUTOFF stay open.
    """
    rng = random.Random(seed)
    deals = []
    month = dt.date(2024, 1, 1)
    number = 0
    while month < CUTOFF:
        for _ in range(100):
            number += 1
            engaged = month.replace(day=5)
            closed, won = None, False
            step = next_month(month)
            while step < CUTOFF:
                draw = rng.random()
                if draw < WIN_HAZARD + LOSS_HAZARD:
                    closed, won = step.replace(day=10), draw < WIN_HAZARD
                    break
                step = next_month(step)
            deals.append(
                DealFacts(
                    id=number,
                    pipeline=1,
                    stage=1,
                    stage_probability=40,
                    amount=1000.0,
                    engaged=engaged,
                    stage_entered=engaged,
                    closed=closed,
                    won=won,
                    won_amount=1000.0 if won else 0.0,
                )
            )
        month = next_month(month)
    return deals


def won_within(deals: list[DealFacts], start: dt.date, months: int) -> float:
    """Return the share of deals open at ``start`` won in the next ``months``."""
    end = start
    for _ in range(months):
        end = next_month(end)
    rows = open_at(deals, start)
    won = [d for d in rows if d.won and d.closed is not None and d.closed < end]
    return len(won) / len(rows)


@pytest.fixture(scope="module")
def history() -> list[DealFacts]:
    return constant_hazard_history()


def test_horizon_chains_monthly_chances(history: list[DealFacts]) -> None:
    model = train(1, history, CUTOFF)
    assert model is not None
    open_deals = open_at(history, CUTOFF)
    quarter = Period(CUTOFF, "quarter")

    month = probabilities(
        model, open_deals, history, CUTOFF, Period(CUTOFF, "month").end
    )
    plain = probabilities(model, open_deals, history, CUTOFF)
    by_quarter = probabilities(model, open_deals, history, CUTOFF, quarter.end)
    mean_month = sum(month.values()) / len(month)
    mean_quarter = sum(by_quarter.values()) / len(by_quarter)
    # Win 20 % in each month, stay open with 70 %: 0.2 + 0.7 * 0.2 + 0.49 * 0.2.
    chained = WIN_HAZARD * (1 + (1 - WIN_HAZARD - LOSS_HAZARD) + 0.7**2)

    assert month == plain
    assert model.monthly_loss_rate == pytest.approx(LOSS_HAZARD, abs=0.02)
    assert mean_month == pytest.approx(WIN_HAZARD, abs=0.03)
    assert mean_quarter == pytest.approx(chained, abs=0.05)
    for deal_id, chance in by_quarter.items():
        assert chance > month[deal_id]


def test_horizon_matches_history_three_months_on(history: list[DealFacts]) -> None:
    """Check the chained chance against what happened to the deals open a
    year before the cutoff."""
    start = dt.date(2025, 1, 1)
    known = [deal for deal in history if deal.engaged < start]
    model = train(1, known, start)
    assert model is not None
    pipeline = open_at(known, start)

    chances = probabilities(model, pipeline, known, start, Period(start, "quarter").end)
    mean = sum(chances.values()) / len(chances)

    assert mean == pytest.approx(won_within(history, start, 3), abs=0.06)
    assert won_within(history, start, 3) > won_within(history, start, 1) + 0.1


def test_quarter_weighted_pipeline_uses_horizon(history: list[DealFacts]) -> None:
    model = train(1, history, CUTOFF)
    open_deals = [
        replace(deal, expected_close=dt.date(2026, 3, 15))
        for deal in open_at(history, CUTOFF)
    ]
    quarter = Period(CUTOFF, "quarter")
    today = CUTOFF - dt.timedelta(days=1)

    by_month = probabilities(model, open_deals, history, CUTOFF)
    by_quarter = probabilities(model, open_deals, history, CUTOFF, quarter.end)
    figures = total_figures(open_deals, by_quarter, quarter, today)
    month_only = total_figures(open_deals, by_month, quarter, today)

    expected = sum(deal.amount * by_quarter[deal.id] for deal in open_deals)
    assert float(figures.weighted) == pytest.approx(expected, abs=1.0)
    assert figures.weighted > month_only.weighted


def test_fixed_probability_ignores_horizon(history: list[DealFacts]) -> None:
    open_deals = open_at(history, CUTOFF)[:5]
    until = Period(CUTOFF, "quarter").end

    chances = probabilities(None, open_deals, history, CUTOFF, until)

    assert set(chances.values()) == {0.4}


def activity_deal(**changes: object) -> DealFacts:
    values: dict[str, object] = {
        "id": 1,
        "pipeline": 1,
        "stage": 1,
        "stage_probability": 40,
        "amount": 100.0,
        "engaged": dt.date(2025, 1, 1),
        "stage_entered": dt.date(2025, 1, 1),
        "comments": (dt.date(2025, 1, 10), dt.date(2025, 2, 3), dt.date(2025, 3, 1)),
        "stage_moves": (dt.date(2025, 1, 20), dt.date(2025, 3, 2)),
    }
    values.update(changes)
    return DealFacts(**values)  # type: ignore[arg-type]


def test_activity_features_count_before_day() -> None:
    deal = activity_deal()
    at = dt.date(2025, 3, 1)

    row = dict(zip(FEATURES, features(deal, at, WinRates()), strict=True))

    # The comment on 1 March and the move on 2 March are not before 1 March.
    assert row["log_comments"] == pytest.approx(math.log1p(2))
    assert row["log_stage_moves"] == pytest.approx(math.log1p(1))
    # The last activity before then is the comment of 3 February.
    assert row["log_days_since_activity"] == pytest.approx(math.log1p(26))


def test_activity_without_any_counts_from_engaging() -> None:
    deal = activity_deal(comments=(), stage_moves=())

    row = dict(
        zip(FEATURES, features(deal, dt.date(2025, 1, 31), WinRates()), strict=True)
    )

    assert row["log_comments"] == 0.0
    assert row["log_stage_moves"] == 0.0
    assert row["log_days_since_activity"] == pytest.approx(math.log1p(30))


def test_training_rows_see_no_later_activity() -> None:
    """A deal whose comments all come after a snapshot shows none in that row."""
    history = constant_hazard_history()
    late = [
        replace(
            deal,
            comments=(deal.closed,) if deal.closed else (),
            stage_moves=(deal.closed,) if deal.closed else (),
        )
        for deal in history
    ]
    column = FEATURES.index("log_comments")
    moves = FEATURES.index("log_stage_moves")

    built = training_set(late, CUTOFF)

    assert built.rows
    assert all(row[column] == 0.0 for row in built.rows)
    assert all(row[moves] == 0.0 for row in built.rows)


def test_activity_lifts_chance_when_it_predicts_wins() -> None:
    """Deals with a comment in their first month win more, and the model learns it."""
    history = constant_hazard_history()
    commented = []
    for deal in history:
        talks = deal.won == (deal.id % 3 != 0)
        comments = (deal.engaged + dt.timedelta(days=2),) if talks else ()
        commented.append(replace(deal, comments=comments))
    model = train(1, commented, CUTOFF)
    assert model is not None
    open_deals = open_at(commented, CUTOFF)
    rates = WinRates.of(closed_before(commented, CUTOFF))
    quiet = replace(open_deals[0], comments=())
    busy = replace(open_deals[0], comments=(quiet.engaged,))

    chances = model.predict([features(d, CUTOFF, rates) for d in (quiet, busy)])

    assert chances[1] > chances[0]


def test_activity_factor_in_words() -> None:
    deal = activity_deal()

    text = describe_activity(deal, dt.date(2025, 3, 12))
    none = describe_activity(
        activity_deal(comments=(), stage_moves=()), dt.date(2025, 3, 12)
    )
    fresh = describe_activity(deal, dt.date(2025, 3, 2))

    assert text == "3 comments and 2 stage moves, the last 10 days ago"
    assert none == "No comments or stage moves yet"
    assert fresh == "3 comments and 2 stage moves, the last today"
