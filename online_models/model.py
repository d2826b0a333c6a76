"""The online churn model: a River pipeline (standard scaling + logistic regression).

It scores every applied event from its feature row and profile attributes, and learns when
the stream reveals a label (a ``churn`` event is positive, ``active`` negative). Scores are
probabilities of churn; explanations are the signed logit contributions of the features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from river import linear_model, optim, preprocessing

from features.schema import FEATURES

# Features that describe the state, not identity or bookkeeping, go to the model.
MODEL_FEATURES = tuple(f for f in FEATURES if f != "days_since_plan_change")


def model_input(row: np.ndarray, attrs: Mapping[str, float]) -> dict[str, float]:
    """A feature row plus profile attributes as River's dict input (missing values left out)."""
    x = {name: float(row[i]) for i, name in enumerate(FEATURES)
         if name in MODEL_FEATURES and not math.isnan(row[i])}
    for name, value in attrs.items():
        x[f"attr_{name}"] = float(value)
    return x


class ChurnModel:
    """Scaler + logistic regression learning online from labelled snapshots."""

    def __init__(self, version: str = "lr-1", learning_rate: float = 0.05) -> None:
        self.version = version
        self.scaler = preprocessing.StandardScaler()
        self.classifier = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
        self.labels_seen = 0

    def score(self, xs: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Churn probability for each input (0.5 before the model has learned anything)."""
        out = np.empty(len(xs), dtype=np.float64)
        transform, predict = self.scaler.transform_one, self.classifier.predict_proba_one
        for i, x in enumerate(xs):
            out[i] = predict(transform(x)).get(True, 0.0)
        return out

    def learn(self, x: Mapping[str, float], churned: bool) -> None:
        """Learn from one labelled snapshot."""
        self.scaler.learn_one(x)
        self.classifier.learn_one(self.scaler.transform_one(x), churned)
        self.labels_seen += 1

    def explain(self, x: Mapping[str, float], top: int = 3) -> list[dict[str, float]]:
        """The ``top`` features by absolute contribution to the logit, with their values."""
        scaled = self.scaler.transform_one(x)
        weights = self.classifier.weights
        contributions = sorted(
            ((name, weights.get(name, 0.0) * value) for name, value in scaled.items()),
            key=lambda item: -abs(item[1]),
        )
        return [{"feature": name, "value": float(x[name]), "contribution": round(c, 6)}
                for name, c in contributions[:top] if c != 0.0]
