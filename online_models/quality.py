"""The model's own quality, measured as it learns (progressive validation) and watched for drift.

Every label is first scored by the model as it stands, then learned: the pairs (score, label)
are an honest out-of-sample stream. ROC AUC and precision at the top decile are computed
exactly over a sliding window of recent labels; log loss is a running mean; ADWIN watches
the per-label log loss and counts drifts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from river.drift import ADWIN

from online_models.evaluate import LOG_LOSS_EPS, precision_at_k, roc_auc
from online_models.model import ChurnModel


@dataclass(frozen=True)
class QualitySnapshot:
    labels: int
    window: int
    roc_auc: float | None
    log_loss: float | None
    precision_at_decile: float | None
    drifts: int


class ProgressiveValidation:
    """Scores each labelled snapshot before the model learns it, and keeps the metrics."""

    def __init__(self, model: ChurnModel, registry: CollectorRegistry | None = None,
                 window: int = 5000) -> None:
        self.model = model
        self.window: deque[tuple[float, bool]] = deque(maxlen=window)
        self.labels = 0
        self.loss_sum = 0.0
        self.drifts = 0
        self.detector = ADWIN()
        r = registry or CollectorRegistry()
        self._auc = Gauge("churnwatch_model_roc_auc", "Progressive ROC AUC over the recent "
                          "label window", registry=r)
        self._loss = Gauge("churnwatch_model_log_loss", "Progressive mean log loss", registry=r)
        self._precision = Gauge("churnwatch_model_precision_at_decile", "Churn rate among the "
                                "top 10 % scores of the recent label window", registry=r)
        self._drifts = Counter("churnwatch_model_drifts", "Drifts detected by ADWIN on the "
                               "progressive log loss", registry=r)
        for unknown in (self._auc, self._loss, self._precision):  # NaN until measured
            unknown.set(math.nan)

    def observe(self, x: Mapping[str, float], churned: bool) -> float:
        """Score ``x``, record the pair, then learn it; returns the pre-learning score."""
        p = float(self.model.score([x])[0])
        loss = -math.log(max(LOG_LOSS_EPS, p if churned else 1.0 - p))
        self.window.append((p, churned))
        self.labels += 1
        self.loss_sum += loss
        self.detector.update(loss)
        if self.detector.drift_detected:
            self.drifts += 1
            self._drifts.inc()
        self.model.learn(x, churned)
        return p

    def snapshot(self) -> QualitySnapshot:
        """Current metrics; also refreshes the Prometheus gauges."""
        if not self.window:
            return QualitySnapshot(self.labels, 0, None, None, None, self.drifts)
        scores = np.array([s for s, _ in self.window])
        labels = np.array([y for _, y in self.window], dtype=np.int8)
        auc = roc_auc(scores, labels)
        precision = precision_at_k(scores, labels, max(1, scores.size // 10))
        loss = self.loss_sum / self.labels
        if auc is not None:
            self._auc.set(auc)
        self._loss.set(loss)
        if precision is not None:
            self._precision.set(precision)
        return QualitySnapshot(self.labels, scores.size, auc, loss, precision, self.drifts)
