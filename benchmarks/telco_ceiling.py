"""How well can any learner do on the Telco feed with only the labels that have arrived?
(issue #22)

The online model's second-half prequential ROC AUC on the Telco table in BSS order is
compared with batch models in 5-fold cross-validation, fitted on ~5,600 labels; at the
second half's score times only ~260 to ~3,500 labels have arrived. This measures, on the same
schedule as ``benchmarks.telco_candidates`` (the benchmark's feed and batches, replayed
offline by ``telco_candidates.replay_scores``):

- arrived-labels oracles: each batch's profiles scored by a batch model fitted from scratch
  on exactly the labels learned before that batch (those the online learner has seen), refit
  at every batch: L2 logistic regression (L-BFGS, L2 1.0 as the batch baseline, on raw and on
  signed log inputs; and on signed log inputs with its L2 chosen by 5-fold CV within the
  arrived labels, from 0.1 to 1,000) and gradient boosting (the batch baseline's: depth 3, 200 rounds), both
  ``benchmarks.bench_telco_feed``'s code;
- the batch baselines' 5-fold CV ROC AUC (same folds) over all rows and over the rows of
  second-half profiles only (per fold, then the mean, as the benchmark reports it);
- online candidates that might do better with few labels: River's Gaussian naive Bayes, the
  mean of its and the shipped logistic regression's probabilities, a bagged logistic
  regression (10 models) and an adaptive random forest (10 trees), on signed log inputs.

    python -m benchmarks.telco_ceiling --csv PATH [--seeds 7,1,2] [--out-dir DIR]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from river import ensemble, forest, linear_model, naive_bayes, optim, preprocessing

from benchmarks import report
from benchmarks.bench_telco_feed import cv_folds, feed, fit_gbm, fit_lr, model_rows
from benchmarks.telco_candidates import (
    Learner,
    parse_telco_args,
    replay_scores,
    second_half,
    telco_parser,
)
from churnwatch.core.events import Event
from online_models.evaluate import roc_auc
from online_models.model import ChurnModel
from online_models.snapshots import LabelPolicy

Fit = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SPREAD_DAYS = 90.0


def _signed_log(X: np.ndarray) -> np.ndarray:
    return np.copysign(np.log1p(np.abs(X)), X)


L2_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _lr_inner_cv(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                 k: int = 5) -> np.ndarray:
    """``fit_lr`` with its L2 chosen from :data:`L2_GRID` by ``k``-fold CV (ROC AUC) within
    ``train``: a rule fixed in advance that adapts the regularisation to the labels at hand."""
    folds = [train[f] for f in cv_folds(len(train), k, 0)]
    best, best_auc = 1.0, -1.0
    for l2 in L2_GRID:
        aucs = [roc_auc(fit_lr(X, y, np.setdiff1d(train, f), f, l2), y[f]) for f in folds]
        auc = float(np.mean([a for a in aucs if a is not None] or [-1.0]))
        if auc > best_auc:
            best, best_auc = l2, auc
    return fit_lr(X, y, train, test, best)


class ArrivedLabels:
    """A batch model refit from scratch, at every scoring, on every label learned so far:
    ``fit(X, y, train, test)`` (``bench_telco_feed``'s batch baselines) returns the test
    rows' logits. Scores 0.5 until both outcomes have been learned."""

    def __init__(self, fit: Fit, names: Sequence[str], log_inputs: bool = False) -> None:
        self.fit, self.names, self.log_inputs = fit, list(names), log_inputs
        self.rows: list[list[float]] = []
        self.ys: list[bool] = []

    def _row(self, x: Mapping[str, float]) -> list[float]:
        return [x.get(n, np.nan) for n in self.names]

    def learn(self, x: Mapping[str, float], churned: bool) -> None:
        self.rows.append(self._row(x))
        self.ys.append(churned)

    def score(self, xs: Sequence[Mapping[str, float]]) -> np.ndarray:
        if len(set(self.ys)) < 2:
            return np.full(len(xs), 0.5)
        X = np.array(self.rows + [self._row(x) for x in xs])
        if self.log_inputs:
            X = _signed_log(X)
        n = len(self.rows)
        y = np.array(self.ys + [False] * len(xs))
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-self.fit(X, y, np.arange(n), np.arange(n, len(X)))))


class _PassThrough(preprocessing.StandardScaler):
    """Keeps the scaler's statistics (``ChurnModel`` admits attributes by its counts) but
    hands values on unscaled: naive Bayes and trees do not need scaling, and a scale that
    moves under them would only blur what they learned earlier."""

    def transform_one(self, x: dict) -> dict:
        return dict(x)


class RiverModel(ChurnModel):
    """``ChurnModel``'s inputs (signed log) with another River classifier; 0.5 before the
    first label, as the logistic regression scores."""

    def __init__(self, classifier: Any, scaled: bool) -> None:
        super().__init__()
        self.classifier = classifier
        if not scaled:
            self.scaler = _PassThrough()

    def score(self, xs: Sequence[Mapping[str, float]]) -> np.ndarray:
        return super().score(xs) if self.labels_seen else np.full(len(xs), 0.5)


def _shipped_lr() -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(0.005), intercept_lr=0.05)


def learners(names: Sequence[str], seed: int) -> dict[str, Callable[[], Learner]]:
    """Every learner measured, by name (``names``: the inputs, for the oracles' columns)."""
    return {
        "online LR, SGD 0.005 (shipped)": ChurnModel,
        "online Gaussian naive Bayes": lambda: RiverModel(naive_bayes.GaussianNB(), False),
        "online bagged LR (10)": lambda: RiverModel(
            ensemble.BaggingClassifier(_shipped_lr(), n_models=10, seed=seed), True),
        "online adaptive random forest (10)": lambda: RiverModel(
            forest.ARFClassifier(n_models=10, seed=seed), False),
        "arrived-labels LR (L2 1.0), raw": lambda: ArrivedLabels(fit_lr, names),
        "arrived-labels LR (L2 1.0), signed log": lambda: ArrivedLabels(fit_lr, names, True),
        "arrived-labels LR (L2 by inner 5-fold CV), signed log":
            lambda: ArrivedLabels(_lr_inner_cv, names, True),
        "arrived-labels GBM (depth 3, 200 rounds)": lambda: ArrivedLabels(fit_gbm, names),
    }


AVERAGES = {"mean of LR and naive Bayes probabilities":
            ("online LR, SGD 0.005 (shipped)", "online Gaussian naive Bayes")}


def batch_cv(X: np.ndarray, y: np.ndarray, later: np.ndarray, fit: Fit, seed: int,
             k: int = 5) -> dict[str, float]:
    """``bench_telco_feed.cross_validated``'s folds and fits; the mean over folds of the ROC AUC
    over all of a fold's rows and over its ``later`` rows only."""
    every, part = [], []
    for fold in cv_folds(len(y), k, seed):
        train = np.setdiff1d(np.arange(len(y)), fold)
        s = fit(X, y, train, fold)
        every.append(roc_auc(s, y[fold]))
        part.append(roc_auc(s[later[fold]], y[fold][later[fold]]))
    return {"all": float(np.mean(every)), "second_half": float(np.mean(part))}


def _labels_arrived(events: Sequence[Event], batch: int) -> list[int]:
    """[fewest, most] labels learned before a batch that holds second-half profiles."""
    counts, arrived = [], 0
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        if second_half(np.array([ev.ts for ev in chunk if ev.type == "profile"], dtype=np.int64),
                       SPREAD_DAYS).any():
            counts.append(arrived)
        arrived += sum(ev.type in ("churn", "active") for ev in chunk)
    return [min(counts), max(counts)] if counts else []


def run_seed(csv_path: str | os.PathLike[str], seed: int, batch: int = 500,
             skip: Sequence[str] = ()) -> dict[str, Any]:
    events, labels = feed(csv_path, seed, SPREAD_DAYS, 31.0, 60.0)
    sids, xs = model_rows(events, LabelPolicy())
    inputs = dict(zip(sids, xs))
    names = sorted({n for x in xs for n in x})
    out: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    for name, make in learners(names, seed).items():
        if name in skip:
            continue
        t0 = time.perf_counter()
        ts, s, y = replay_scores(events, labels, inputs, make(), batch)
        later = second_half(ts, SPREAD_DAYS)
        scores[name] = s
        out[name] = {"all": roc_auc(s, y), "second_half": roc_auc(s[later], y[later]),
                     "seconds": round(time.perf_counter() - t0, 1)}
        report.note(f"seed {seed}, {name}: {out[name]}")
    for name, (a, b) in AVERAGES.items():
        if a in scores and b in scores:
            s = (scores[a] + scores[b]) / 2
            out[name] = {"all": roc_auc(s, y), "second_half": roc_auc(s[later], y[later])}
    # the batch baselines, on the rows in model_rows' order
    profile_ts = {ev.subscriber_id: ev.ts for ev in events if ev.type == "profile"}
    X = np.array([[x.get(n, np.nan) for n in names] for x in xs])
    y_rows = np.array([labels[s] for s in sids])
    later_rows = second_half(np.array([profile_ts[s] for s in sids]), SPREAD_DAYS)
    t0 = time.perf_counter()
    out["batch LR (L2 1.0), raw, 5-fold CV"] = batch_cv(X, y_rows, later_rows, fit_lr, seed)
    out["batch LR (L2 1.0), signed log, 5-fold CV"] = batch_cv(
        _signed_log(X), y_rows, later_rows, fit_lr, seed)
    out["batch GBM (depth 3, 200 rounds), 5-fold CV"] = batch_cv(
        X, y_rows, later_rows, fit_gbm, seed)
    out["batch CV seconds"] = round(time.perf_counter() - t0, 1)
    out["second_half_profiles"] = int(later.sum())
    out["labels_arrived_at_second_half_batches"] = _labels_arrived(events, batch)
    return out


def _summary(result: dict[str, Any]) -> None:
    seeds = list(result["seeds"])
    methods = [m for m in result["seeds"][seeds[0]] if isinstance(
        result["seeds"][seeds[0]][m], dict)]
    rows = [[m, " / ".join(f"{result['seeds'][s][m]['all']:.3f}" for s in seeds),
             " / ".join(f"{result['seeds'][s][m]['second_half']:.3f}" for s in seeds)]
            for m in methods]
    report.print_table(f"Telco in BSS order, ROC AUC (seeds {' / '.join(seeds)})",
                       ["method", "all profiles", "second half"], rows,
                       caption="seconds per seed: " + "; ".join(
                           f"{s}: {result['seconds_per_seed'][s]}" for s in seeds))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = telco_parser("telco_ceiling", __doc__)
    p.add_argument("--batch", type=int, default=500, help="events per batch")
    p.add_argument("--skip", action="append", default=[], help="a learner not to run")
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = parse_telco_args(p, argv)
    result: dict[str, Any] = {"benchmark": "telco_ceiling", "created": report.utc_now(),
                              "machine": report.machine_info(with_redis=False),
                              "code_version": report.code_version(
                                  ("benchmarks/telco_ceiling.py",
                                   "benchmarks/telco_candidates.py",
                                   "benchmarks/bench_telco_feed.py", "online_models")),
                              "batch": a.batch, "oracle_refit_every_batches": 1,
                              "seeds": {}, "seconds_per_seed": {}}
    for seed in (int(s) for s in a.seeds.split(",")):
        t0 = time.perf_counter()
        result["seeds"][str(seed)] = run_seed(a.csv, seed, a.batch, a.skip)
        result["seconds_per_seed"][str(seed)] = round(time.perf_counter() - t0, 1)
    return report.finish("telco_ceiling", result, a.out_dir, a.json, _summary)


if __name__ == "__main__":
    main()
