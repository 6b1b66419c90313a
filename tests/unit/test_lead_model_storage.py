"""The lead model stored as JSON: it predicts as the scikit-learn pipeline it
was fitted with, survives a round trip, and a pickle is never loaded."""

from __future__ import annotations

import io
import pickle
import random

import joblib
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from app.scoring import model as lead_model
from app.scoring.model import LeadModel, Record, fit


def synthetic_leads(count: int, seed: int) -> tuple[list[Record], list[int]]:
    """Leads whose source and visits make conversion more likely, with rare
    sources, missing answers and a numeric field."""
    generator = random.Random(seed)
    sources = ["Reference", "Google", "Olark Chat", "Direct", "Referral Sites"]
    records: list[Record] = []
    outcomes = []
    for index in range(count):
        source = generator.choice(sources)
        if index % 97 == 0:
            source = f"Rare source {index}"
        visits = generator.randint(0, 20)
        chance = 0.15 + 0.5 * (source == "Reference") + 0.02 * visits
        records.append(
            {
                "Lead Source": source,
                "TotalVisits": str(visits) if index % 11 else None,
                "Country": generator.choice(["India", "Canada", None]),
            }
        )
        outcomes.append(int(generator.random() < min(chance, 0.95)))
    return records, outcomes


def pipeline_probabilities(
    model: LeadModel,
    train: list[Record],
    outcomes: list[int],
    test: list[Record],
    method: str,
) -> np.ndarray:
    """Fit the scikit-learn objects exactly as ``fit`` does and predict with them."""
    encoder = OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=lead_model.MIN_VALUE_COUNT,
        sparse_output=True,
    )
    matrix = encoder.fit_transform(np.array(model.rows(train), dtype=object))
    calibrated = CalibratedClassifierCV(
        LogisticRegression(C=lead_model.REGULARISATION_C, max_iter=2000),
        method=method,
        cv=lead_model.CALIBRATION_FOLDS,
        ensemble=False,
    )
    calibrated.fit(matrix, np.asarray(outcomes))
    test_matrix = encoder.transform(np.array(model.rows(test), dtype=object))
    return np.asarray(calibrated.predict_proba(test_matrix)[:, 1])


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_stored_model_predicts_as_pipeline(method: str) -> None:
    train, outcomes = synthetic_leads(1500, seed=1)
    test, _ = synthetic_leads(300, seed=2)
    # Values never seen in training go through the "(other)" weight or none.
    test.append({"Lead Source": "Brand new", "TotalVisits": "999", "Country": "Peru"})

    fitted = fit(train, outcomes, calibration=method)
    loaded = LeadModel.loads(fitted.dumps())
    expected = pipeline_probabilities(fitted, train, outcomes, test, method)

    np.testing.assert_allclose(fitted.predict(test), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(loaded.predict(test), expected, rtol=0, atol=1e-12)
    assert loaded.explain(test[0]) == fitted.explain(test[0])


def test_stored_model_is_plain_json() -> None:
    train, outcomes = synthetic_leads(600, seed=3)

    data = fit(train, outcomes).dumps()

    assert data.startswith(b"{")
    assert b'"format":1' in data
    assert b'"calibration":{"method":"sigmoid"' in data


class Exploit:
    """An object whose unpickling would run code."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled",))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(Exploit()),
        b"not json",
        b'{"format": 99}',
        b"{}",
    ],
)
def test_loads_rejects_other_data(data: bytes, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError):
        LeadModel.loads(data)

    assert "unpickled" not in capsys.readouterr().out


def test_loads_rejects_joblib_model() -> None:
    train, outcomes = synthetic_leads(600, seed=4)
    buffer = io.BytesIO()
    joblib.dump(fit(train, outcomes), buffer)

    with pytest.raises(ValueError):
        LeadModel.loads(buffer.getvalue())
