"""Progressive validation: scored before learned, metrics exact on the window, drift counted."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from online_models.evaluate import roc_auc
from online_models.model import ChurnModel
from online_models.quality import ProgressiveValidation


def _stream(rng: np.random.Generator, n: int, flip: bool = False):
    for _ in range(n):
        churned = bool(rng.random() < 0.3)
        signal = (1.0 if churned else -1.0) * (-1.0 if flip else 1.0)
        yield {"complaints_30d": signal + rng.normal(0, 0.5), "noise": rng.normal()}, churned


def test_scores_before_learning_and_metrics_match_an_offline_computation() -> None:
    rng = np.random.default_rng(1)
    registry = CollectorRegistry()
    pv = ProgressiveValidation(ChurnModel(), registry, window=300)
    pairs = []
    for x, y in _stream(rng, 600):
        before = float(pv.model.score([x])[0])
        assert pv.observe(x, y) == before  # the returned score is the pre-learning one
        pairs.append((before, y))
    snap = pv.snapshot()
    recent = pairs[-300:]
    expected_auc = roc_auc([s for s, _ in recent], [y for _, y in recent])
    assert snap.labels == 600 and snap.window == 300
    assert snap.roc_auc == expected_auc and snap.roc_auc > 0.9
    losses = [-np.log(max(1e-15, s if y else 1 - s)) for s, y in pairs]
    assert abs(snap.log_loss - float(np.mean(losses))) < 1e-12
    assert registry.get_sample_value("churnwatch_model_roc_auc") == expected_auc


def test_concept_drift_is_detected() -> None:
    rng = np.random.default_rng(2)
    pv = ProgressiveValidation(ChurnModel(), CollectorRegistry(), window=500)
    for x, y in _stream(rng, 1500):
        pv.observe(x, y)
    stable = pv.drifts
    for x, y in _stream(rng, 1500, flip=True):  # the signal reverses
        pv.observe(x, y)
    assert pv.drifts > stable
