"""Candidate online learners on the Telco table in BSS order, side by side (issue #22).

``benchmarks.bench_telco_feed`` runs one model through the real pipeline and learner (~20 s
a run, plus its batch baselines). To compare many candidates on the same feed this replays
the same schedule offline: the same events (``bench_telco_feed.feed``, same seed), cut into
the same batches of ``--batch`` events; the profiles of a batch are scored by the model that
has learned the labels of every earlier batch (the learner steps and publishes after each
batch, and the pipeline switches to the new version before the next), each label learned
with its profile's model inputs as the worker builds them (``bench_telco_feed.model_rows``).
It reproduces the benchmark's figures for the same model (seed 7, the former default: 0.687
over all profiles, 0.828 over the second half, in both). The chosen candidate is then
measured by the benchmark itself.

Candidates: the shipped logistic regression with River's SGD (learning rate 0.005, 0.02),
AdaGrad (0.1) and FTRL-Proximal (River's defaults) as optimizers, and a periodic refit (every
100 labels, then every quarter of the window, an exact L2 logistic regression, L-BFGS, over
the last 20,000 labels, SGD in between), each on raw inputs and on the signed log scale
(``ChurnModel(inputs=...)``).

    python -m benchmarks.telco_candidates --csv PATH [--seeds 7,1,2]
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from river import linear_model, optim
from scipy.optimize import minimize

from benchmarks import report
from benchmarks.bench_telco_feed import feed, model_rows
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from online_models.evaluate import roc_auc
from online_models.model import IDENTITY, SIGNED_LOG, ChurnModel
from online_models.snapshots import LabelPolicy
from online_models.telco import T0_MS


def _with_optimizer(make: Callable[[], optim.base.Optimizer], inputs: str) -> ChurnModel:
    model = ChurnModel(inputs=inputs)
    model.classifier = linear_model.LogisticRegression(optimizer=make(), intercept_lr=0.05)
    return model


class RefitModel(ChurnModel):
    """SGD as shipped, plus a periodic exact L2 logistic regression over the last ``window``
    labels (on the scaler's current statistics; missing inputs read as the mean, as scored)."""

    def __init__(self, inputs: str, window: int = 20_000, l2: float = 1.0) -> None:
        super().__init__(inputs=inputs)
        self.recent: deque[tuple[dict[str, float], bool]] = deque(maxlen=window)
        self.l2 = l2
        self.next_refit = 100

    def learn(self, x: Mapping[str, float], churned: bool) -> None:
        super().learn(x, churned)
        self.recent.append((dict(self._read(self._admitted(x))), churned))
        if self.labels_seen >= self.next_refit:
            self._refit()
            self.next_refit = self.labels_seen + max(100, len(self.recent) // 4)

    def _refit(self) -> None:
        names = sorted(self.scaler.counts)
        mean = np.array([self.scaler.means[n] for n in names])
        std = np.sqrt(np.array([self.scaler.vars[n] for n in names]))
        raw = np.array([[x.get(n, np.nan) for n in names] for x, _ in self.recent])
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where((std > 0) & ~np.isnan(raw), (raw - mean) / np.where(std > 0, std, 1), 0)
        A = np.column_stack([z, np.ones(len(z))])
        y = np.array([c for _, c in self.recent], dtype=float)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            m = A @ w
            grad = A.T @ (1.0 / (1.0 + np.exp(-m)) - y)
            grad[:-1] += self.l2 * w[:-1]
            return float(np.sum(np.logaddexp(0.0, m) - y * m)
                         + 0.5 * self.l2 * w[:-1] @ w[:-1]), grad

        w0 = np.array([self.classifier.weights.get(n, 0.0) for n in names]
                      + [self.classifier.intercept])
        w = minimize(loss, w0, jac=True, method="L-BFGS-B").x
        for name, value in zip(names, w[:-1]):
            self.classifier._weights[name] = float(value)
        self.classifier.intercept = float(w[-1])


CANDIDATES: dict[str, Callable[[str], ChurnModel]] = {
    "SGD 0.005 (shipped)": lambda inputs: ChurnModel(inputs=inputs),
    "SGD 0.02": lambda inputs: ChurnModel(learning_rate=0.02, inputs=inputs),
    "AdaGrad 0.1": lambda inputs: _with_optimizer(lambda: optim.AdaGrad(0.1), inputs),
    "FTRL-Proximal": lambda inputs: _with_optimizer(optim.FTRLProximal, inputs),
    "SGD + refit on last 20k labels": lambda inputs: RefitModel(inputs),
}


class Learner(Protocol):
    def score(self, xs: Sequence[Mapping[str, float]]) -> np.ndarray: ...
    def learn(self, x: Mapping[str, float], churned: bool) -> None: ...


def replay_scores(events: Sequence[Event], labels: Mapping[str, bool],
                  inputs: Mapping[str, Mapping[str, float]], model: Learner, batch: int = 500,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each profile's (time, score, label), in event order: the profiles of a batch of
    ``batch`` events are scored by ``model`` before it learns the labels of that batch (each
    with its profile's ``inputs``), so a score uses only the labels of earlier batches."""
    ts, scores, ys = [], [], []
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        profiles = [ev for ev in chunk if ev.type == "profile"]
        if profiles:
            scores.extend(model.score([inputs[ev.subscriber_id] for ev in profiles]))
            ts.extend(ev.ts for ev in profiles)
            ys.extend(labels[ev.subscriber_id] for ev in profiles)
        for ev in chunk:
            if ev.type in ("churn", "active"):
                model.learn(inputs[ev.subscriber_id], ev.type == "churn")
    return np.array(ts), np.array(scores, dtype=float), np.array(ys, dtype=bool)


def second_half(ts: np.ndarray, spread_days: float = 90.0) -> np.ndarray:
    """Which of the times ``ts`` fall in the second half of the feed's event time."""
    return ts >= T0_MS + spread_days * DAY_MS / 2


def prequential(csv_path: str | os.PathLike[str], seed: int,
                factory: Callable[[], ChurnModel], batch: int = 500,
                spread_days: float = 90.0) -> tuple[float | None, float | None]:
    """(all profiles, second half) prequential ROC AUC of ``factory``'s model on the feed."""
    events, labels = feed(csv_path, seed, spread_days, 31.0, 60.0)
    sids, xs = model_rows(events, LabelPolicy())
    ts, s, y = replay_scores(events, labels, dict(zip(sids, xs)), factory(), batch)
    second = second_half(ts, spread_days)
    return roc_auc(s, y), roc_auc(s[second], y[second])


def telco_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The Telco studies' command line: ``--csv`` (the table) and ``--seeds``."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}",
                                description=doc.split("\n")[0])
    p.add_argument("--csv", default=os.environ.get("CHURNWATCH_TELCO_CSV"),
                   help="Telco-Customer-Churn.csv (default: $CHURNWATCH_TELCO_CSV)")
    p.add_argument("--seeds", default="7,1,2")
    return p


def parse_telco_args(p: argparse.ArgumentParser,
                     argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; exit with the fix when the table is not there."""
    a = p.parse_args(argv)
    if not a.csv or not Path(a.csv).is_file():
        raise SystemExit(f"{a.csv}: not found. Fix: pass --csv or set CHURNWATCH_TELCO_CSV")
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a = parse_telco_args(telco_parser("telco_candidates", __doc__), argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    results: dict[str, Any] = {}
    rows = []
    for name, make in CANDIDATES.items():
        for inputs in (IDENTITY, SIGNED_LOG):
            figures = [prequential(a.csv, seed, partial(make, inputs)) for seed in seeds]
            results[f"{name}, {inputs}"] = {str(s): f for s, f in zip(seeds, figures)}
            rows.append([name, inputs, " / ".join(f"{f[0]:.3f}" for f in figures),
                         " / ".join(f"{f[1]:.3f}" for f in figures)])
            report.note(f"{name}, {inputs}: {rows[-1][2]}  {rows[-1][3]}")
    report.print_table(f"Telco in BSS order, prequential ROC AUC (seeds {a.seeds})",
                       ["learner", "inputs", "all profiles", "second half"], rows)
    return results


if __name__ == "__main__":
    main()
