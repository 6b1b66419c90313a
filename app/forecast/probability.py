"""Calibrated chance that an open deal is won within the coming month.

The model is a logistic regression over a few features of a deal's state,
calibrated with Platt scaling (scikit-learn's ``CalibratedClassifierCV``
with ``method="sigmoid"``), one model per pipeline.

Training rows are monthly snapshots of the pipeline's past. For each month
start ``s`` whose month had ended by the cutoff, every deal engaged before
``s`` and not closed before ``s`` is one row. Its label is whether it was
won before the month ended, and its features use only what was known at
``s``: win rates count deals closed before ``s``, and activity counts only
comments and stage moves dated before ``s``. A closed deal is assumed to
have spent its open life in the pipeline's last open stage, because the
event log that records stage moves is pruned after a few days. Months
before the pipeline's first close carry no outcomes and are left out.

The model's figure is a monthly hazard. ``chance_by`` turns it into the
chance of a win by the end of a longer period (see there).

A pipeline with fewer than ``MIN_CLOSED_DEALS`` closed deals, or too few of
either outcome, gets no model, and its deals keep their stage's fixed
probability.

A trained model is stored as plain numbers (coefficients and calibration
parameters) rather than as a pickle, so loading one runs no code.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.web.templating import money

# Closed deals, and deals of each outcome, a pipeline needs before its
# model replaces the fixed stage probabilities.
MIN_CLOSED_DEALS = 200
MIN_PER_OUTCOME = 20
# Weight of the pipeline-wide win rate in each smoothed per-owner, per-account
# and per-product rate, in deals: a rate over a handful of deals stays near
# the pipeline's.
PRIOR_DEALS = 5.0
# Validation folds of the calibration.
CALIBRATION_FOLDS = 3
MODEL_VERSION = 2

FEATURES = (
    "stage_probability",
    "log_age_days",
    "age_up_to_15_days",
    "age_up_to_45_days",
    "age_over_90_days",
    "log_days_in_stage",
    "owner_win_rate",
    "log_owner_closed",
    "account_win_rate",
    "product_win_rate",
    "log_amount",
    "first_month_of_quarter",
    "second_month_of_quarter",
    "log_comments",
    "log_stage_moves",
    "log_days_since_activity",
)


@dataclass(frozen=True)
class DealFacts:
    """The facts of one deal that the forecast uses.

    ``engaged`` is the day the deal entered the pipeline (its engage date,
    else its creation). ``closed`` is the day it was won or lost, or None
    while it is open. ``stage`` is its current stage, and for a closed deal
    the open stage it is assumed to have been in before closing.
    ``expected_close`` is the close date set on an open deal.
    ``comments`` and ``stage_moves`` are the days of the deal's comments and
    of its recorded stage changes, sorted, so that features can count those
    before any day.
    """

    id: int
    pipeline: int
    stage: int
    stage_probability: int
    amount: float
    engaged: dt.date
    stage_entered: dt.date
    owner: int | None = None
    team: int | None = None
    product: int | None = None
    account: int | None = None
    closed: dt.date | None = None
    won: bool = False
    expected_close: dt.date | None = None
    won_amount: float = 0.0
    comments: tuple[dt.date, ...] = ()
    stage_moves: tuple[dt.date, ...] = ()
    # The category set on the deal, None for its stage's (app.forecast.figures).
    forecast_category: str | None = None

    def activity_before(self, at: dt.date) -> tuple[int, int, dt.date]:
        """Return the comments and stage moves before ``at``, and the last day
        of either (the engage day when there is none)."""
        comments = bisect.bisect_left(self.comments, at)
        moves = bisect.bisect_left(self.stage_moves, at)
        last = self.engaged
        if comments:
            last = max(last, self.comments[comments - 1])
        if moves:
            last = max(last, self.stage_moves[moves - 1])
        return comments, moves, last


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def open_at(deals: Iterable[DealFacts], at: dt.date) -> list[DealFacts]:
    """Return the deals engaged before ``at`` and not closed before it."""
    return [
        deal
        for deal in deals
        if deal.engaged < at and (deal.closed is None or deal.closed >= at)
    ]


def closed_before(deals: Iterable[DealFacts], at: dt.date) -> list[DealFacts]:
    return [deal for deal in deals if deal.closed is not None and deal.closed < at]


@dataclass
class WinRates:
    """Win rates among deals closed before a day, smoothed toward the overall rate."""

    overall: float = 0.5
    owners: dict[int | None, tuple[int, int]] = field(default_factory=dict)
    accounts: dict[int | None, tuple[int, int]] = field(default_factory=dict)
    products: dict[int | None, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, closed: Sequence[DealFacts]) -> WinRates:
        counts: dict[str, dict[int | None, list[int]]] = {
            name: defaultdict(lambda: [0, 0])
            for name in ("owners", "accounts", "products")
        }
        for deal in closed:
            for name, key in (
                ("owners", deal.owner),
                ("accounts", deal.account),
                ("products", deal.product),
            ):
                counts[name][key][0] += int(deal.won)
                counts[name][key][1] += 1
        won = sum(int(deal.won) for deal in closed)
        return cls(
            overall=won / len(closed) if closed else 0.5,
            **{
                name: {key: (pair[0], pair[1]) for key, pair in table.items()}
                for name, table in counts.items()
            },
        )

    def rate(self, table: dict[int | None, tuple[int, int]], key: int | None) -> float:
        won, closed = table.get(key, (0, 0)) if key is not None else (0, 0)
        return (won + PRIOR_DEALS * self.overall) / (closed + PRIOR_DEALS)


def features(deal: DealFacts, at: dt.date, rates: WinRates) -> list[float]:
    """Return the features of ``deal`` as it stood on ``at``, in FEATURES order."""
    age = max((at - deal.engaged).days, 0)
    in_stage = max((at - min(deal.stage_entered, at)).days, 0)
    owner_closed = rates.owners.get(deal.owner, (0, 0))[1] if deal.owner else 0
    month_of_quarter = (at.month - 1) % 3
    comments, moves, last_activity = deal.activity_before(at)
    return [
        deal.stage_probability / 100,
        math.log1p(age),
        float(age <= 15),
        float(age <= 45),
        float(age > 90),
        math.log1p(in_stage),
        rates.rate(rates.owners, deal.owner),
        math.log1p(owner_closed),
        rates.rate(rates.accounts, deal.account),
        rates.rate(rates.products, deal.product),
        math.log1p(max(deal.amount, 0.0)),
        float(month_of_quarter == 0),
        float(month_of_quarter == 1),
        math.log1p(comments),
        math.log1p(moves),
        math.log1p(max((at - last_activity).days, 0)),
    ]


@dataclass(frozen=True)
class CalibratedMember:
    """One fold's logistic regression and the sigmoid fitted on its held-out rows."""

    coef: tuple[float, ...]
    intercept: float
    a: float
    b: float


@dataclass(frozen=True)
class WinModel:
    """A trained model of one pipeline: P(won within a month | state)."""

    pipeline: int
    cutoff: dt.date
    closed_deals: int
    training_rows: int
    members: tuple[CalibratedMember, ...]
    features: tuple[str, ...] = FEATURES
    version: int = MODEL_VERSION
    # Mean of each feature over the training rows, in FEATURES order: the
    # baseline that factors are measured from. Empty for a model stored
    # before means were recorded.
    means: tuple[float, ...] = ()
    # Share of the training rows whose deal was lost within the month: the
    # chance, taken as the same for every deal, of leaving the pipeline
    # lost in a month. ``chance_by`` uses it between months.
    monthly_loss_rate: float = 0.0

    def predict(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Return the calibrated probability of each feature row.

        Same arithmetic as ``CalibratedClassifierCV.predict_proba`` with
        ``ensemble=True``: each member's decision value goes through its
        sigmoid, and the members' probabilities are averaged.
        """
        matrix = np.asarray(rows, dtype=float).reshape(-1, len(self.features))
        total = np.zeros(len(matrix))
        for member in self.members:
            decision = matrix @ np.asarray(member.coef) + member.intercept
            total += 1.0 / (1.0 + np.exp(member.a * decision + member.b))
        return np.clip(total / len(self.members), 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "pipeline": self.pipeline,
            "cutoff": self.cutoff.isoformat(),
            "closed_deals": self.closed_deals,
            "training_rows": self.training_rows,
            "features": list(self.features),
            "means": list(self.means),
            "monthly_loss_rate": self.monthly_loss_rate,
            "members": [
                {
                    "coef": list(m.coef),
                    "intercept": m.intercept,
                    "a": m.a,
                    "b": m.b,
                }
                for m in self.members
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WinModel | None:
        """Rebuild a stored model; None when it was stored by another version."""
        if data.get("version") != MODEL_VERSION or tuple(data["features"]) != FEATURES:
            return None
        return cls(
            pipeline=int(data["pipeline"]),
            cutoff=dt.date.fromisoformat(data["cutoff"]),
            closed_deals=int(data["closed_deals"]),
            training_rows=int(data["training_rows"]),
            members=tuple(
                CalibratedMember(
                    coef=tuple(float(x) for x in m["coef"]),
                    intercept=float(m["intercept"]),
                    a=float(m["a"]),
                    b=float(m["b"]),
                )
                for m in data["members"]
            ),
            means=stored_means(data.get("means")),
            monthly_loss_rate=float(data.get("monthly_loss_rate", 0.0)),
        )


def stored_means(raw: Any) -> tuple[float, ...]:
    """Read stored feature means; a list of the wrong length counts as none."""
    means = tuple(float(x) for x in raw or ())
    return means if len(means) == len(FEATURES) else ()


@dataclass
class TrainingSet:
    """Snapshot rows, their labels (won within the month) and how many were
    lost within the month."""

    rows: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    lost: int = 0


def training_set(deals: Sequence[DealFacts], cutoff: dt.date) -> TrainingSet:
    """Build the monthly snapshot rows known on ``cutoff`` (see the module doc)."""
    closed = closed_before(deals, cutoff)
    result = TrainingSet()
    if not closed:
        return result
    snapshot = month_start(min(deal.closed for deal in closed if deal.closed))
    while next_month(snapshot) <= cutoff:
        end = next_month(snapshot)
        rates = WinRates.of(closed_before(closed, snapshot))
        for deal in open_at(deals, snapshot):
            result.rows.append(features(deal, snapshot, rates))
            closed_in_month = deal.closed is not None and deal.closed < end
            result.labels.append(int(closed_in_month and deal.won))
            result.lost += int(closed_in_month and not deal.won)
        snapshot = end
    return result


def training_rows(
    deals: Sequence[DealFacts], cutoff: dt.date
) -> tuple[list[list[float]], list[int]]:
    """Return the rows and labels of ``training_set``."""
    built = training_set(deals, cutoff)
    return built.rows, built.labels


def has_enough_history(closed: Sequence[DealFacts]) -> bool:
    won = sum(int(deal.won) for deal in closed)
    return (
        len(closed) >= MIN_CLOSED_DEALS
        and won >= MIN_PER_OUTCOME
        and len(closed) - won >= MIN_PER_OUTCOME
    )


def train(
    pipeline: int, deals: Sequence[DealFacts], cutoff: dt.date
) -> WinModel | None:
    """Train the pipeline's model on what was known on ``cutoff``, or return None.

    None means too little history: fewer than MIN_CLOSED_DEALS closed deals,
    fewer than MIN_PER_OUTCOME of either outcome among them or among the
    snapshot rows.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    closed = closed_before(deals, cutoff)
    if not has_enough_history(closed):
        return None
    built = training_set(deals, cutoff)
    rows, labels = built.rows, built.labels
    positives = sum(labels)
    if positives < MIN_PER_OUTCOME or len(labels) - positives < MIN_PER_OUTCOME:
        return None

    classifier = CalibratedClassifierCV(
        LogisticRegression(max_iter=2000),
        method="sigmoid",
        cv=CALIBRATION_FOLDS,
        ensemble=True,
    )
    matrix = np.asarray(rows, dtype=float)
    classifier.fit(matrix, np.asarray(labels))
    members = []
    for calibrated in classifier.calibrated_classifiers_:
        estimator = calibrated.estimator
        sigmoid = calibrated.calibrators[0]
        members.append(
            CalibratedMember(
                coef=tuple(float(x) for x in estimator.coef_[0]),
                intercept=float(estimator.intercept_[0]),
                a=float(sigmoid.a_),
                b=float(sigmoid.b_),
            )
        )
    return WinModel(
        pipeline=pipeline,
        cutoff=cutoff,
        closed_deals=len(closed),
        training_rows=len(labels),
        members=tuple(members),
        means=tuple(float(x) for x in matrix.mean(axis=0)),
        monthly_loss_rate=built.lost / len(labels),
    )


def chance_by(
    model: WinModel,
    open_deals: Sequence[DealFacts],
    rates: WinRates,
    at: dt.date,
    until: dt.date,
) -> np.ndarray:
    """Return each deal's chance of being won before ``until``, from ``at`` on.

    The model gives h, the chance of a win within a month. The months are
    chained: the first step is the model's figure on ``at``, and each
    later step starts at the next month start before ``until``, with the
    deal's age, days in stage and quarter month moved on to that day. A
    deal still open at a step's start wins in that step with its h, and
    stays open with 1 - h - the model's monthly loss rate. With ``until``
    at most one month after ``at``, the result is the model's figure.

    NOTE: the first step is a whole month's chance even when ``at`` falls
    in the middle of a month, as the forecast has always counted it, so a
    mid-month figure overlaps the next step's month by the days elapsed.
    """
    steps = [at]
    while next_month(steps[-1]) < until:
        steps.append(next_month(steps[-1]))
    staying = np.ones(len(open_deals))
    total = np.zeros(len(open_deals))
    for step in steps:
        hazard = model.predict([features(deal, step, rates) for deal in open_deals])
        total += staying * hazard
        staying *= np.clip(1.0 - hazard - model.monthly_loss_rate, 0.0, 1.0)
    return np.clip(total, 0.0, 1.0)


def probabilities(
    model: WinModel | None,
    open_deals: Sequence[DealFacts],
    history: Sequence[DealFacts],
    at: dt.date,
    until: dt.date | None = None,
) -> dict[int, float]:
    """Return each open deal's probability: the model's, else its stage's fixed one.

    ``history`` contains the pipeline's deals. Only those closed before ``at``
    feed the win rates. With ``until``, a model's probability is that of a
    win before ``until`` (``chance_by``), and without it that of a win
    within a month. A stage's fixed probability is one figure for the
    deal's whole life, so it stays the same for every ``until``.
    """
    if model is None or not open_deals:
        return {deal.id: deal.stage_probability / 100 for deal in open_deals}
    rates = WinRates.of(closed_before(history, at))
    if until is None:
        predicted = model.predict([features(deal, at, rates) for deal in open_deals])
    else:
        predicted = chance_by(model, open_deals, rates, at, until)
    return {deal.id: float(p) for deal, p in zip(open_deals, predicted, strict=True)}


def fixed_probabilities(open_deals: Sequence[DealFacts]) -> dict[int, float]:
    return {deal.id: deal.stage_probability / 100 for deal in open_deals}


def weighted_total(open_deals: Sequence[DealFacts], chances: dict[int, float]) -> float:
    """Sum amount times probability over ``open_deals``."""
    return sum(deal.amount * chances.get(deal.id, 0.0) for deal in open_deals)


# Factors: why a deal's probability is what it is.


@dataclass(frozen=True)
class FactorGroup:
    """Features that read one fact of a deal, explained as one factor.

    ``fields`` names the deal fields whose value the factor's words show, so
    a viewer who may not see one of them never gets the factor.
    """

    name: str
    features: tuple[str, ...]
    fields: tuple[str, ...] = ()


FACTOR_GROUPS = (
    FactorGroup("stage", ("stage_probability",), ("stage",)),
    FactorGroup(
        "age",
        (
            "log_age_days",
            "age_up_to_15_days",
            "age_up_to_45_days",
            "age_over_90_days",
        ),
    ),
    FactorGroup("days_in_stage", ("log_days_in_stage",)),
    FactorGroup("owner", ("owner_win_rate", "log_owner_closed"), ("owner",)),
    FactorGroup("account", ("account_win_rate",)),
    FactorGroup("product", ("product_win_rate",)),
    FactorGroup("amount", ("log_amount",), ("amount",)),
    FactorGroup("quarter", ("first_month_of_quarter", "second_month_of_quarter")),
    FactorGroup(
        "activity",
        ("log_comments", "log_stage_moves", "log_days_since_activity"),
    ),
)
assert sorted(name for group in FACTOR_GROUPS for name in group.features) == sorted(
    FEATURES
), "every feature belongs to exactly one factor group"


@dataclass(frozen=True)
class Factor:
    """One factor of a deal's probability, as the deal page shows it."""

    group: str
    text: str
    points: int
    fields: tuple[str, ...] = ()

    def sentence(self) -> str:
        return f"{self.text} ({self.points:+d} pts)"


@dataclass(frozen=True)
class DealChance:
    """An open deal's win probability and the factors behind it, largest first.

    ``model_closed_deals`` is the number of closed deals the pipeline's
    model learnt from, or None when the pipeline has no model; then the
    probability is the stage's fixed one and there are no factors.
    ``explained`` is False for a model stored without feature means, which
    gives no factors.
    """

    probability: float
    model_closed_deals: int | None = None
    factors: tuple[Factor, ...] = ()
    explained: bool = False

    @property
    def from_model(self) -> bool:
        return self.model_closed_deals is not None

    @property
    def percent(self) -> int:
        return round(100 * self.probability)

    def to_json(self) -> dict[str, Any]:
        return {
            "probability": round(self.probability, 6),
            "model_closed_deals": self.model_closed_deals,
            "explained": self.explained,
            "factors": [
                {
                    "group": factor.group,
                    "text": factor.text,
                    "points": factor.points,
                    "fields": list(factor.fields),
                }
                for factor in self.factors
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DealChance:
        closed_deals = data.get("model_closed_deals")
        return cls(
            probability=float(data["probability"]),
            model_closed_deals=None if closed_deals is None else int(closed_deals),
            factors=tuple(
                Factor(
                    str(item["group"]),
                    str(item["text"]),
                    int(item["points"]),
                    tuple(item.get("fields", ())),
                )
                for item in data.get("factors", ())
            ),
            explained=bool(data.get("explained")),
        )

    def shown_factors(self, hidden: Collection[str], top: int = 3) -> list[Factor]:
        """Return the ``top`` largest factors showing none of the ``hidden`` fields."""
        shown = [
            factor
            for factor in self.factors
            if not any(name in hidden for name in factor.fields)
        ]
        return shown[:top]


def calibrated(model: WinModel, decisions: np.ndarray) -> float:
    """Average the members' sigmoids of their decision values, one value per member."""
    a = np.array([member.a for member in model.members])
    b = np.array([member.b for member in model.members])
    return float(np.mean(1.0 / (1.0 + np.exp(a * decisions + b))))


def contribution_points(model: WinModel, row: Sequence[float]) -> dict[str, int]:
    """Return each factor group's share of the row's probability, in points.

    A feature's contribution to a member's log-odds is its coefficient times
    its distance from the training mean. A group's points are 100 times the
    change in calibrated probability that removing its features'
    contributions makes, which is the method of the lead scores' factors
    (``LeadModel.explain``) applied to every calibration member at once.
    Groups are removed one at a time, so the points need not add up to the
    distance from the average deal.
    """
    values = np.asarray(row, dtype=float)
    coef = np.array([member.coef for member in model.members])
    intercepts = np.array([member.intercept for member in model.members])
    decisions = coef @ values + intercepts
    contributions = coef * (values - np.asarray(model.means))
    probability = calibrated(model, decisions)
    points = {}
    for group in FACTOR_GROUPS:
        columns = [model.features.index(name) for name in group.features]
        without = calibrated(model, decisions - contributions[:, columns].sum(axis=1))
        points[group.name] = round(100 * (probability - without))
    return points


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def win_record(label: str, record: tuple[int, int]) -> str:
    won, closed = record
    if closed == 0:
        return f"{label} has no closed deals yet"
    return (
        f"{label} won {round(100 * won / closed)} % of {plural(closed, 'closed deal')}"
    )


def describe(
    group: str, deal: DealFacts, rates: WinRates, today: dt.date, at: dt.date
) -> str:
    """Put what a factor group reads of ``deal`` into words.

    Days count up to ``today``. The quarter is that of ``at``, the day the
    model's features are taken on.
    """
    if group == "stage":
        return f"Stage's fixed probability is {deal.stage_probability} %"
    if group == "age":
        return f"Open for {plural(max((today - deal.engaged).days, 0), 'day')}"
    if group == "days_in_stage":
        days = max((today - deal.stage_entered).days, 0)
        return f"In this stage for {plural(days, 'day')}"
    if group == "owner":
        if deal.owner is None:
            return "No owner"
        return win_record("Owner", rates.owners.get(deal.owner, (0, 0)))
    if group == "account":
        if deal.account is None:
            return "No account"
        return win_record("Account", rates.accounts.get(deal.account, (0, 0)))
    if group == "product":
        if deal.product is None:
            return "No product"
        return win_record("Product", rates.products.get(deal.product, (0, 0)))
    if group == "amount":
        return f"Amount of {money(deal.amount)}"
    if group == "quarter":
        place = ("First", "Second", "Last")[(at.month - 1) % 3]
        return f"{place} month of the quarter"
    if group == "activity":
        return describe_activity(deal, today)
    raise ValueError(f"unknown factor group {group!r}")


def describe_activity(deal: DealFacts, today: dt.date) -> str:
    """Put the deal's comments, stage moves and last activity into words."""
    comments, moves, last = deal.activity_before(today + dt.timedelta(days=1))
    if not comments and not moves:
        return "No comments or stage moves yet"
    quiet = max((today - last).days, 0)
    when = "today" if quiet == 0 else f"{plural(quiet, 'day')} ago"
    return (
        f"{plural(comments, 'comment')} and {plural(moves, 'stage move')}, "
        f"the last {when}"
    )


def deal_chance(
    model: WinModel | None, deal: DealFacts, rates: WinRates, today: dt.date
) -> DealChance:
    """Compute an open deal's probability and factors as the forecast does today.

    Like ``app.forecast.service.deal_chances``, features are taken on the
    day after ``today``, so ``rates`` must count the deals closed up to
    ``today``. A model without stored means gives the probability with no
    factors.
    """
    if model is None:
        return DealChance(deal.stage_probability / 100)
    at = today + dt.timedelta(days=1)
    row = features(deal, at, rates)
    probability = float(model.predict([row])[0])
    if not model.means:
        return DealChance(probability, model.closed_deals)
    points = contribution_points(model, row)
    factors = [
        Factor(
            group.name,
            describe(group.name, deal, rates, today, at),
            points[group.name],
            group.fields,
        )
        for group in FACTOR_GROUPS
        if points[group.name] != 0
    ]
    factors.sort(key=lambda factor: abs(factor.points), reverse=True)
    return DealChance(probability, model.closed_deals, tuple(factors), explained=True)
