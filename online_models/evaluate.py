"""Quality figures of churn scores against labels: exact ROC AUC, log loss, Brier score,
precision/recall at a threshold, precision at k and calibration.

``churnwatch evaluate`` computes them on the worker's own scores (``streams.replay``: the
feed through the real pipeline and fleet learner); the learner's progressive validation
(``online_models.quality``) on the examples it learns.

ROC AUC is computed exactly (Mann–Whitney U with average ranks for ties), not with River's
fixed-threshold approximation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

LOG_LOSS_EPS = 1e-15


def roc_auc(scores: Iterable[float], labels: Iterable[int | bool]) -> float | None:
    """Exact ROC AUC: P(score of a random positive > score of a random negative), ties ½.

    Rank-based Mann–Whitney U with average ranks for tied scores. ``None`` when the labels
    hold only one class (AUC is undefined).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value: (first + last) / 2 of its block
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse][y].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def log_loss(scores: np.ndarray, labels: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy with probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(scores, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float | None:
    """Share of positives among the ``k`` highest scores; a tie at the cut counts the tied
    block's positive rate for the places it fills (the expectation over tie orders)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if k <= 0 or s.size == 0:
        return None
    k = min(k, s.size)
    cut = np.sort(s)[::-1][k - 1]
    above = s > cut
    tied = s == cut
    fill = k - int(above.sum())
    hits = float(y[above].sum()) + fill * float(y[tied].sum()) / float(tied.sum())
    return hits / k


def calibration(scores: np.ndarray, labels: np.ndarray, bins: int) -> list[dict[str, Any]]:
    """Equal-width probability bins on [0, 1]: count, mean predicted, observed churn rate."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.clip((s * bins).astype(np.int64), 0, bins - 1)  # 1.0 falls in the last bin
    table = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        table.append({
            "lo": round(b / bins, 6), "hi": round((b + 1) / bins, 6), "count": count,
            "mean_predicted": float(s[mask].mean()) if count else None,
            "observed_rate": float(y[mask].mean()) if count else None,
        })
    return table


def metrics(scores: Iterable[float], labels: Iterable[int | bool], threshold: float = 0.5,
            bins: int = 10) -> dict[str, Any]:
    """Every quality figure of a set of (score, label) pairs."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n = int(s.size)
    positives = int(y.sum())
    out: dict[str, Any] = {"n": n, "positives": positives,
                           "base_rate": positives / n if n else None}
    if n == 0:
        return out | {"roc_auc": None, "log_loss": None, "brier": None, "precision": None,
                      "recall": None, "f1": None, "confusion": None, "precision_at_k": None,
                      "k": 0, "calibration": calibration(s, y, bins), "ece": None}
    predicted = s >= threshold
    tp = int((predicted & y).sum())
    fp = int((predicted & ~y).sum())
    fn = int((~predicted & y).sum())
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else
          (0.0 if precision is not None or recall is not None else None))
    table = calibration(s, y, bins)
    ece = sum(row["count"] / n * abs(row["mean_predicted"] - row["observed_rate"])
              for row in table if row["count"])
    return out | {
        "roc_auc": roc_auc(s, y),
        "log_loss": log_loss(s, y),
        "brier": float(np.mean((s - y) ** 2)),
        "precision": precision, "recall": recall, "f1": f1,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "k": positives, "precision_at_k": precision_at_k(s, y, positives),
        "calibration": table, "ece": float(ece),
    }
