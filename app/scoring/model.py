"""The predictive part of lead scores: training, prediction and explanations.

This module does not touch the database. A record is a mapping from a
field name ("Lead Source", a custom question) to its value as text, or
None for no answer. ``fit`` learns, from records with known outcomes, a
logistic regression on one-hot features calibrated by cross-validation
(scikit-learn's ``CalibratedClassifierCV``). Numeric fields are cut into
quantile bins first, so every feature is a category and the model's
coefficients read as "this value adds so much".

The training job (``app.scoring.training``) and ``bench/models.py`` both
call ``fit``; the bench measures exactly the model the application uses.
A fitted model is plain numbers (coefficients per field value, the
intercept and the calibration), stored as JSON, so loading one runs no code.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import ArrayLike
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.preprocessing import OneHotEncoder

Record = Mapping[str, str | None]

MISSING = "(no answer)"
OTHER = "(other)"
# A field is numeric when at least this share of its answers parse as numbers.
NUMERIC_SHARE = 0.9
NUMERIC_BINS = 10
# Values seen fewer times than this in training share one "(other)" feature.
MIN_VALUE_COUNT = 5
# Version of the stored JSON layout; ``LeadModel.loads`` rejects others.
STORAGE_FORMAT = 1
# Inverse regularisation strength of the logistic regression.
REGULARISATION_C = 1.0
CALIBRATION_FOLDS = 5
RANDOM_SEED = 20261204


@dataclass
class NumericBins:
    """Quantile edges of one numeric field; a value falls in the bin it exceeds."""

    edges: list[float]

    def label(self, raw: str | None) -> str:
        number = parse_number(raw)
        if number is None:
            return MISSING
        index = int(np.searchsorted(self.edges, number, side="right"))
        low = self.edges[index - 1] if index > 0 else None
        high = self.edges[index] if index < len(self.edges) else None
        if low is None:
            return f"below {format_number(high)}"
        if high is None:
            return f"{format_number(low)} or more"
        return f"{format_number(low)} to under {format_number(high)}"


def parse_number(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def format_number(number: float | None) -> str:
    if number is None:
        return ""
    return f"{number:g}"


@dataclass
class Calibration:
    """The map from the logistic regression's log-odds to a probability.

    ``sigmoid`` is 1 / (1 + exp(a * logit + b)), as scikit-learn's sigmoid
    calibration computes it. ``isotonic`` interpolates linearly between the
    points ``x`` and ``y`` and clips outside them, as IsotonicRegression
    with out_of_bounds="clip" does.
    """

    method: str
    a: float = 0.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            exponent = np.clip(self.a * logits + self.b, -700, 700)
            return np.asarray(1.0 / (1.0 + np.exp(exponent)))
        return np.interp(logits, self.x, self.y)

    @classmethod
    def from_fitted(cls, method: str, calibrator: Any) -> Calibration:
        if method == "sigmoid":
            return cls(method, a=float(calibrator.a_), b=float(calibrator.b_))
        if method == "isotonic":
            return cls(
                method,
                x=[float(value) for value in calibrator.X_thresholds_],
                y=[float(value) for value in calibrator.y_thresholds_],
            )
        raise ValueError(f"calibration {method!r} cannot be stored")


@dataclass
class LeadModel:
    """A trained model: the column layout, one weight per field value, and the
    calibration of their sum."""

    columns: list[str]
    numeric: dict[str, NumericBins]
    calibration: Calibration
    # Per column, the training frequency-weighted mean coefficient: a
    # value's contribution is its coefficient minus this baseline.
    baselines: dict[str, float] = field(default_factory=dict)
    coefficients: dict[tuple[str, str], float] = field(default_factory=dict)
    intercept: float = 0.0

    def rows(self, records: Iterable[Record]) -> list[list[str]]:
        return [self.encode_row(record) for record in records]

    def encode_row(self, record: Record) -> list[str]:
        row = []
        for column in self.columns:
            raw = record.get(column)
            if column in self.numeric:
                row.append(self.numeric[column].label(raw))
            else:
                row.append(raw if raw not in (None, "") else MISSING)
        return row

    def weight(self, column: str, value: str) -> float:
        """Return the coefficient of a column's value, as the one-hot encoder
        maps it: a rare or unseen value takes the column's "(other)" weight,
        or none when the column had no rare values in training."""
        weight = self.coefficients.get((column, value))
        if weight is None:
            weight = self.coefficients.get((column, OTHER), 0.0)
        return weight

    def logit(self, record: Record) -> float:
        row = self.encode_row(record)
        return self.intercept + sum(
            self.weight(column, value)
            for column, value in zip(self.columns, row, strict=True)
        )

    def predict(self, records: Sequence[Record]) -> np.ndarray:
        """Return the calibrated probability of conversion of each record."""
        if not records:
            return np.zeros(0)
        logits = np.array([self.logit(record) for record in records])
        return self.calibration.apply(logits)

    def explain(self, record: Record, top: int = 3) -> list[Factor]:
        """Return the fields that moved this record's probability most.

        A field's contribution is its value's coefficient minus the field's
        average coefficient over the training data, in log-odds. Points are
        the change in calibrated probability, times 100, that removing the
        contribution makes: cheap (one prediction per field) and exact for
        the model's linear part.
        """
        row = self.encode_row(record)
        contributions = []
        for column, value in zip(self.columns, row, strict=True):
            weight = self.coefficients.get((column, value))
            if weight is None:
                weight = self.coefficients.get((column, OTHER), self.baselines[column])
            contributions.append((column, value, weight - self.baselines[column]))

        logit = self.intercept + sum(self.baselines.values())
        logit += sum(delta for _, _, delta in contributions)
        probability = self.calibrate_logit(logit)
        factors = []
        for column, value, delta in contributions:
            without = self.calibrate_logit(logit - delta)
            points = round(100 * (probability - without))
            if points != 0:
                factors.append(Factor(column, value, points))
        factors.sort(key=lambda factor: abs(factor.points), reverse=True)
        return factors[:top]

    def calibrate_logit(self, logit: float) -> float:
        """Map the base model's log-odds through the fitted calibration."""
        return float(self.calibration.apply(np.array([logit]))[0])

    def dumps(self) -> bytes:
        """Encode the model as JSON."""
        return msgspec.json.encode(
            {
                "format": STORAGE_FORMAT,
                "columns": self.columns,
                "numeric": {
                    column: bins.edges for column, bins in self.numeric.items()
                },
                "calibration": {
                    "method": self.calibration.method,
                    "a": self.calibration.a,
                    "b": self.calibration.b,
                    "x": self.calibration.x,
                    "y": self.calibration.y,
                },
                "intercept": self.intercept,
                "coefficients": [
                    [column, value, weight]
                    for (column, value), weight in self.coefficients.items()
                ],
                "baselines": self.baselines,
            }
        )

    @staticmethod
    def loads(data: bytes) -> LeadModel:
        """Decode a model that ``dumps`` encoded.

        Raises ValueError for anything else, such as a pickled model stored
        before models were JSON, which is never unpickled.
        """
        try:
            stored = msgspec.json.decode(data, type=StoredModel)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ValueError(f"stored lead model is not valid JSON: {error}") from None
        if stored.format != STORAGE_FORMAT:
            raise ValueError(f"stored lead model has format {stored.format}")
        calibration = stored.calibration
        if calibration.method not in ("sigmoid", "isotonic"):
            raise ValueError(f"stored calibration {calibration.method!r} is unknown")
        return LeadModel(
            columns=stored.columns,
            numeric={
                column: NumericBins(edges=edges)
                for column, edges in stored.numeric.items()
            },
            calibration=Calibration(
                calibration.method,
                a=calibration.a,
                b=calibration.b,
                x=calibration.x,
                y=calibration.y,
            ),
            baselines=stored.baselines,
            coefficients={
                (column, value): weight for column, value, weight in stored.coefficients
            },
            intercept=stored.intercept,
        )


class StoredCalibration(msgspec.Struct):
    method: str
    a: float = 0.0
    b: float = 0.0
    x: list[float] = []
    y: list[float] = []


class StoredModel(msgspec.Struct):
    """The JSON layout of a stored model, checked as it is decoded."""

    format: int
    columns: list[str]
    numeric: dict[str, list[float]]
    calibration: StoredCalibration
    intercept: float
    coefficients: list[tuple[str, str, float]]
    baselines: dict[str, float]


@dataclass(frozen=True)
class Factor:
    """One field's share of a score, as the lead page shows it."""

    column: str
    value: str
    points: int

    def describe(self) -> str:
        """Return the factor in words, such as "Lead Source is Reference"."""
        if self.value == MISSING:
            return f"{self.column} has no answer"
        if self.value == OTHER:
            return f"{self.column} is a rare answer"
        return f"{self.column} is {self.value}"

    def sentence(self) -> str:
        return f"{self.describe()} ({self.points:+d})"


def numeric_columns(records: Sequence[Record], columns: list[str]) -> list[str]:
    found = []
    for column in columns:
        answers = [
            record.get(column)
            for record in records
            if record.get(column) not in (None, "")
        ]
        if not answers:
            continue
        parsed = sum(parse_number(answer) is not None for answer in answers)
        if parsed / len(answers) >= NUMERIC_SHARE:
            found.append(column)
    return found


def quantile_bins(records: Sequence[Record], column: str) -> NumericBins:
    values = [parse_number(record.get(column)) for record in records]
    numbers = np.array([value for value in values if value is not None])
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
    return NumericBins(edges=[float(edge) for edge in edges])


def fit(
    records: Sequence[Record],
    outcomes: Sequence[int],
    calibration: str = "sigmoid",
) -> LeadModel:
    """Train a calibrated model; ``outcomes`` contains 1 for converted, 0 for not.

    Raises ValueError when either outcome has fewer records than the
    calibration folds need.
    """
    counts = Counter(outcomes)
    if min(counts.get(0, 0), counts.get(1, 0)) < CALIBRATION_FOLDS:
        raise ValueError(
            f"training needs at least {CALIBRATION_FOLDS} converted and "
            f"{CALIBRATION_FOLDS} other closed leads, got {counts.get(1, 0)} "
            f"and {counts.get(0, 0)}"
        )
    columns = sorted({name for record in records for name in record})
    numeric = {
        column: quantile_bins(records, column)
        for column in numeric_columns(records, columns)
    }
    encoder = OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=MIN_VALUE_COUNT,
        sparse_output=True,
    )
    model = LeadModel(
        columns=columns, numeric=numeric, calibration=Calibration(calibration)
    )
    rows = np.array(model.rows(records), dtype=object)
    matrix = encoder.fit_transform(rows)
    target = np.asarray(outcomes)

    base = LogisticRegression(C=REGULARISATION_C, max_iter=2000)
    # ensemble=False fits one base model on all records and calibrates it on
    # cross-validated predictions, so explanations read one set of weights.
    calibrated = CalibratedClassifierCV(
        base, method=calibration, cv=CALIBRATION_FOLDS, ensemble=False
    )
    calibrated.fit(matrix, target)
    fitted_pair = calibrated.calibrated_classifiers_[0]
    fitted: LogisticRegression = fitted_pair.estimator
    model.calibration = Calibration.from_fitted(calibration, fitted_pair.calibrators[0])
    model.intercept = float(fitted.intercept_[0])
    model.coefficients, model.baselines = feature_weights(
        encoder, fitted.coef_[0], rows, columns
    )
    return model


def feature_weights(
    encoder: OneHotEncoder, weights: np.ndarray, rows: np.ndarray, columns: list[str]
) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Name each one-hot weight by column and value, and average them per column."""
    coefficients: dict[tuple[str, str], float] = {}
    names = encoder.get_feature_names_out(columns)
    position = 0
    baselines = {}
    for index, column in enumerate(columns):
        width = len(encoder.categories_[index]) - len(
            encoder.infrequent_categories_[index]
            if encoder.infrequent_categories_[index] is not None
            else []
        )
        infrequent = encoder.infrequent_categories_[index] is not None
        width += 1 if infrequent else 0
        for offset in range(width):
            name = str(names[position + offset])
            value = name[len(column) + 1 :]
            if value == "infrequent_sklearn":
                value = OTHER
            coefficients[(column, value)] = float(weights[position + offset])
        position += width
        seen = Counter(rows[:, index])
        total = sum(seen.values())
        baselines[column] = sum(
            coefficients.get((column, value), coefficients.get((column, OTHER), 0.0))
            * count
            for value, count in seen.items()
        ) / max(total, 1)
    return coefficients, baselines


def expected_calibration_error(
    outcomes: Sequence[int], probabilities: ArrayLike, bins: int = 10
) -> float:
    """Return the expected calibration error over equal-width probability bins."""
    target = np.asarray(outcomes, dtype=float)
    predicted = np.asarray(probabilities, dtype=float)
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    error = 0.0
    for bin_index in range(bins):
        members = index == bin_index
        if members.any():
            gap = abs(predicted[members].mean() - target[members].mean())
            error += gap * members.sum() / len(target)
    return float(error)


def evaluate(outcomes: Sequence[int], probabilities: ArrayLike) -> dict[str, Any]:
    """Return ROC AUC, Brier score and expected calibration error (10 bins)."""
    return {
        "roc_auc": float(roc_auc_score(outcomes, probabilities)),
        "brier": float(brier_score_loss(outcomes, probabilities)),
        "ece": expected_calibration_error(outcomes, probabilities),
        "count": len(outcomes),
        "positives": int(sum(outcomes)),
    }
