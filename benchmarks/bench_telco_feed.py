"""Does the worker learn from the feed operators actually have? (IBM Telco table, BSS order)

An operator's BSS gives one snapshot per subscriber — a ``profile`` event with its tenure and
numeric attributes — and, a month or two later, its outcome: ``churn`` (port-out) or
``active`` (renewal). Nothing else. This benchmark feeds the IBM Telco table that way through
the real pipeline (``streams.pipeline.Pipeline``: real feature store on its own
``redis-server``, rules, delayed labels on stored snapshots; no Kafka): every customer's
profile at a random time spread over ``--spread-days`` (90) of event time, its label
``--delay-min``..``--delay-max`` (31–60) days later, events in event-time order, in batches
of ``--batch`` events. After every batch the fleet learner steps and publishes, and the
pipeline switches to the new version, as the worker's timers would; the silence sweep
re-scores the customers quiet since their profile, after every batch (a worker fed in real
time) or every ``--sweep-every-days`` of event time (a worker fed N days a second sweeps
every 5 s × N), or not at all (``--no-sweep``); see ``streams/replay.py``.

The figure is the worker's own: the score record it publishes for each profile event, made
with the version active at the time, against the customer's label (prequential ROC AUC, over
all profiles and over those in the second half of event time, when the model has had labels
to learn from). Next to it, in the same run and on the same rows (each profile's model
inputs, as the worker builds them), batch baselines in 5-fold cross-validation: L2 logistic
regression and histogram gradient boosting (fixed settings, not tuned). scikit-learn is not
in the project's environment, so both are small numpy/scipy implementations here
(``fit_lr``, ``fit_gbm``); for scale, the table's own reference (scikit-learn, stratified
5-fold) is LR 0.845, HGB 0.834 (``data/ibm_telco/SOURCE.md``).

Nobody is acted on (``--holdout 1``): a treated subscriber's snapshot is not learned (its
label is confounded by the action), so the shipped model rule acting on high scores would
hide labels this benchmark is about. ``--holdout 0.05`` shows the production default.

    python -m benchmarks.bench_telco_feed [--csv PATH] [--seed 7] [--batch 500]
        [--sweep-every-days D | --no-sweep] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import redis.asyncio as aioredis
from scipy.optimize import minimize

from benchmarks import report
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from churnwatch.dev.embedded import EmbeddedRedis
from features.reference import ReferenceStore
from online_models.evaluate import roc_auc
from online_models.model import ChurnModel, model_input
from online_models.snapshots import LabelPolicy
from online_models.telco import T0_MS, pseudonym, read_rows, row_attrs
from streams.records import Record
from streams.replay import replay
from streams.replay import report as quality_report

CODE_PATHS = ("online_models", "features", "streams/pipeline.py", "streams/replay.py",
              "benchmarks/bench_telco_feed.py")


def feed(csv_path: str | os.PathLike[str], seed: int, spread_days: float, delay_min: float,
         delay_max: float) -> tuple[list[Event], dict[str, bool]]:
    """The table in the operator's order: each customer's profile at a seeded random time in
    ``spread_days``, its label ``delay_min``..``delay_max`` days later; events sorted by time.
    Returns the events and each subscriber's label (churned)."""
    rng = random.Random(seed)
    events: list[Event] = []
    labels: dict[str, bool] = {}
    for row in read_rows(csv_path):
        sid = pseudonym(row["customerID"].strip())
        churned = row["Churn"].strip() == "Yes"
        labels[sid] = churned
        ts = T0_MS + int(rng.uniform(0, spread_days) * DAY_MS)
        label_ts = ts + int(rng.uniform(delay_min, delay_max) * DAY_MS)
        events.append(Event(event_id=f"{sid}-profile", subscriber_id=sid, type="profile", ts=ts,
                            plan=row["Contract"].strip(),
                            tenure_months=float(int(row["tenure"])), attrs=row_attrs(row)))
        events.append(Event(event_id=f"{sid}-label", subscriber_id=sid,
                            type="churn" if churned else "active", ts=label_ts))
    events.sort(key=lambda ev: (ev.ts, ev.event_id))
    return events, labels


async def _replay(url: str, events: Sequence[Event], batch: int, holdout: float,
                  policy: LabelPolicy, model_factory: Callable[[], ChurnModel] = ChurnModel,
                  sweep_every_ms: int | None = 0,
                  ) -> tuple[dict[str, tuple[int, float]], dict[str, Any]]:
    """The shared driver (``streams.replay``, as ``churnwatch evaluate`` runs it): each
    profile's score record (subscriber → (ts, score)) and the run's counts."""
    client = aioredis.Redis.from_url(url)
    try:
        run = await replay(client, [Record("churn.events", 0, k, msgspec.json.encode(ev))
                                    for k, ev in enumerate(events)],
                           batch=batch, holdout=holdout, policy=policy,
                           model_factory=model_factory, sweep_every_ms=sweep_every_ms)
    finally:
        await client.aclose()
    assert run.metrics is not None and run.model is not None
    registry = run.metrics.registry

    def total(name: str, **labels: str) -> int:
        return int(registry.get_sample_value(name, labels or None) or 0)

    profile_scores = {event_id.removesuffix("-profile"): scored
                      for event_id, scored in run.score_events.items()
                      if event_id.endswith("-profile")}
    positives, negatives = run.model.label_counts()
    quality = quality_report(run)
    counts = {
        "examples_positive": total("churnwatch_model_examples_total", label="churn"),
        "examples_negative": total("churnwatch_model_examples_total", label="active"),
        "learned_positive": positives, "learned_negative": negatives,
        "dropped_treated": total("churnwatch_model_snapshots_dropped_total", reason="treated"),
        "silence_rescored": len(run.swept),
        "examples_of_sweeps": sum((ex.subscriber_id, ex.snapshot_ts) in run.swept
                                  for ex in run.examples),
        "alerts": run.alerts,
        "model_version": run.model.version,
        "learner_progressive_roc_auc": run.learner_roc_auc,
        # what `churnwatch evaluate` reports on this run: labels joined to their events'
        # snapshots' score records, the later half by snapshot time (all_learned: with the
        # silence sweep's re-scores)
        "evaluate_roc_auc_all": quality["overall"]["roc_auc"],
        "evaluate_roc_auc_second_half": quality["second_half"]["roc_auc"],
        "evaluate_all_learned_roc_auc_all": quality["all_learned"]["overall"]["roc_auc"],
        "evaluate_all_learned_roc_auc_second_half":
            quality["all_learned"]["second_half"]["roc_auc"],
        "examples_unscored": quality["examples_unscored"],
        "replay_seconds": round(run.seconds, 1),
    }
    return profile_scores, counts


# ---- batch baselines on the same rows ------------------------------------------------------
def model_rows(events: Sequence[Event], policy: LabelPolicy) -> tuple[list[str], list[dict]]:
    """Each profile's model inputs as the worker builds them (reference features at the
    profile, plus its attributes), in event order."""
    store = ReferenceStore(policy.lateness_ms)
    sids, xs = [], []
    for ev in events:
        status, row = store.apply(ev)
        if ev.type == "profile" and status == "A":
            sids.append(ev.subscriber_id)
            xs.append(model_input(row, store.attrs(ev.subscriber_id)))
    return sids, xs


def _matrix(xs: Sequence[dict[str, float]]) -> np.ndarray:
    names = sorted({k for x in xs for k in x})
    return np.array([[x.get(n, np.nan) for n in names] for x in xs])


def cv_folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def fit_lr(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
           l2: float = 1.0) -> np.ndarray:
    """L2 logistic regression (standardised inputs, missing → the mean), fitted by L-BFGS."""
    mean = np.nanmean(X[train], axis=0)
    std = np.nanstd(X[train], axis=0)
    std[~(std > 0)] = 1.0

    def prep(rows: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((X[rows] - mean) / std, nan=0.0)
        return np.column_stack([z, np.ones(len(rows))])

    A, t = prep(train), y[train].astype(float)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = A @ w
        value = np.sum(np.logaddexp(0.0, m) - t * m) + 0.5 * l2 * w[:-1] @ w[:-1]
        grad = A.T @ (1.0 / (1.0 + np.exp(-m)) - t)
        grad[:-1] += l2 * w[:-1]
        return value, grad

    w = minimize(loss, np.zeros(A.shape[1]), jac=True, method="L-BFGS-B").x
    return prep(test) @ w


def _bin(X: np.ndarray, train: np.ndarray, bins: int) -> np.ndarray:
    """Quantile bins from the training rows (missing: a bin of its own, the last)."""
    out = np.empty(X.shape, np.int64)
    for c in range(X.shape[1]):
        col = X[:, c]
        edges = np.unique(np.nanquantile(X[train, c], np.linspace(0, 1, bins + 1)[1:-1])) \
            if np.isfinite(X[train, c]).any() else np.empty(0)
        out[:, c] = np.where(np.isnan(col), bins, np.searchsorted(edges, col, side="right"))
    return out


def fit_gbm(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
            rounds: int = 200, rate: float = 0.1, depth: int = 3, bins: int = 32,
            min_hess: float = 5.0, l2: float = 1.0) -> np.ndarray:
    """Histogram gradient boosting of depth-``depth`` trees on the logistic loss."""
    B = _bin(X, train, bins)
    nb = bins + 1
    t = y[train].astype(float)
    base = np.log(t.mean() / (1 - t.mean()))
    f_train = np.full(len(train), base)
    f_test = np.full(len(test), base)
    Btr, Bte = B[train], B[test]
    for _ in range(rounds):
        p = 1.0 / (1.0 + np.exp(-f_train))
        g, h = p - t, p * (1 - p)
        node_tr = np.zeros(len(train), np.int64)
        node_te = np.zeros(len(test), np.int64)
        for level in range(depth):
            for node in range(2 ** level):
                rows = node_tr == node
                G, H = g[rows].sum(), h[rows].sum()
                best = (0.0, -1, -1)
                for c in range(B.shape[1]):
                    gh = np.bincount(Btr[rows, c], g[rows], nb).cumsum()
                    hh = np.bincount(Btr[rows, c], h[rows], nb).cumsum()
                    ok = (hh >= min_hess) & (H - hh >= min_hess)
                    gain = np.where(ok, gh**2 / (hh + l2) + (G - gh)**2 / (H - hh + l2)
                                    - G**2 / (H + l2), 0.0)
                    cut = int(np.argmax(gain))
                    if gain[cut] > best[0]:
                        best = (float(gain[cut]), c, cut)
                _, c, cut = best
                right_tr = rows & (Btr[:, c] > cut) if c >= 0 else np.zeros_like(rows)
                right_te = (node_te == node) & (Bte[:, c] > cut) if c >= 0 else \
                    np.zeros(len(test), bool)
                node_tr = np.where(rows, 2 * node + right_tr, node_tr)
                node_te = np.where(node_te == node, 2 * node + right_te, node_te)
        leaves = 2 ** depth
        G = np.bincount(node_tr, g, leaves)
        H = np.bincount(node_tr, h, leaves)
        value = -G / (H + l2)
        f_train += rate * value[node_tr]
        f_test += rate * value[node_te]
    return f_test


def cross_validated(X: np.ndarray, y: np.ndarray, fit: Any, seed: int, k: int = 5
                    ) -> dict[str, Any]:
    """ROC AUC of ``fit`` in ``k``-fold cross-validation: per fold, mean ± sd."""
    aucs = []
    for fold in cv_folds(len(y), k, seed):
        train = np.setdiff1d(np.arange(len(y)), fold)
        aucs.append(roc_auc(fit(X, y, train, fold), y[fold]))
    return {"mean": float(np.mean(aucs)), "sd": float(np.std(aucs)), "folds": aucs}


def run(csv_path: str | os.PathLike[str], seed: int, batch: int, holdout: float,
        spread_days: float, delay_min: float, delay_max: float,
        model_factory: Callable[[], ChurnModel] = ChurnModel,
        sweep_every_days: float | None = 0.0) -> dict[str, Any]:
    """``sweep_every_days``: event time between silence sweeps (0: after every batch, as a
    worker fed in real time; ``None``: no sweep; ``streams.replay``)."""
    events, labels = feed(csv_path, seed, spread_days, delay_min, delay_max)
    policy = LabelPolicy()  # the shipped defaults (model_history_days 35, horizon 60 days)
    sweep_every_ms = None if sweep_every_days is None else int(sweep_every_days * DAY_MS)
    with EmbeddedRedis() as server:
        scored, counts = asyncio.run(_replay(server.url, events, batch, holdout, policy,
                                             model_factory, sweep_every_ms))
    sids = sorted(scored, key=lambda s: scored[s])
    ts = np.array([scored[s][0] for s in sids])
    score = np.array([scored[s][1] for s in sids])
    y = np.array([labels[s] for s in sids])
    second = ts >= T0_MS + spread_days * DAY_MS / 2
    t0 = time.perf_counter()
    rows_sids, xs = model_rows(events, policy)
    order = {s: i for i, s in enumerate(rows_sids)}
    X = _matrix(xs)
    y_rows = np.array([labels[s] for s in rows_sids])
    batch_lr = cross_validated(X, y_rows, fit_lr, seed)
    batch_gbm = cross_validated(X, y_rows, fit_gbm, seed)
    assert set(order) == set(sids), "every profile was scored"
    return {
        "benchmark": "telco_feed", "created": report.utc_now(),
        "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
        "feed": {"customers": len(labels), "churned": int(sum(labels.values())),
                 "events": len(events), "seed": seed, "spread_days": spread_days,
                 "label_delay_days": [delay_min, delay_max], "batch": batch,
                 "holdout": holdout, "sweep_every_days": sweep_every_days},
        "policy": {"history_days": policy.history_ms / DAY_MS,
                   "horizon_days": policy.horizon_ms / DAY_MS},
        "labels": counts,
        "worker_scores": {
            "profiles_scored": len(sids),
            "distinct_scores": int(len(np.unique(score.round(6)))),
            "scored_at_0_5": int(np.sum(score == 0.5)),
            "roc_auc_all": roc_auc(score, y),
            "roc_auc_second_half": roc_auc(score[second], y[second]),
            "second_half_profiles": int(second.sum()),
        },
        "batch": {"inputs": X.shape[1], "rows": len(y_rows),
                  "logistic_regression_5fold": batch_lr,
                  "gradient_boosting_5fold": batch_gbm,
                  "implementation": "numpy/scipy in this file (scikit-learn not installed)",
                  "seconds": round(time.perf_counter() - t0, 1)},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_telco_feed",
                                description=__doc__.split("\n")[0])
    p.add_argument("--csv", default=os.environ.get("CHURNWATCH_TELCO_CSV"),
                   help="Telco-Customer-Churn.csv (default: $CHURNWATCH_TELCO_CSV)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=500, help="events per pipeline batch")
    p.add_argument("--holdout", type=float, default=1.0,
                   help="share of alerted subscribers not acted on (1: nobody is treated)")
    p.add_argument("--spread-days", type=float, default=90.0)
    p.add_argument("--delay-min", type=float, default=31.0)
    p.add_argument("--delay-max", type=float, default=60.0)
    p.add_argument("--sweep-every-days", type=float, default=0.0,
                   help="event-time days between silence sweeps (0: after every batch, as a "
                        "worker fed in real time; a worker fed N days/s sweeps every "
                        "5 s x N)")
    p.add_argument("--no-sweep", action="store_true", help="run no silence sweep")
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    a = p.parse_args(argv)
    if not a.csv or not Path(a.csv).is_file():
        raise SystemExit(f"{a.csv}: not found. Fix: pass --csv or set CHURNWATCH_TELCO_CSV")
    if a.sweep_every_days < 0:
        raise SystemExit("--sweep-every-days must be at least 0 (--no-sweep: none)")
    result = run(a.csv, a.seed, a.batch, a.holdout, a.spread_days, a.delay_min, a.delay_max,
                 sweep_every_days=None if a.no_sweep else a.sweep_every_days)
    path = report.write_report("telco_feed", result, a.out_dir)
    w, b, lab = result["worker_scores"], result["batch"], result["labels"]
    report.print_table(
        "Telco table in BSS order: prequential ROC AUC of the worker's scores on profiles",
        ["model", "all profiles", "second half"],
        [["worker (online, its own score records)", f"{w['roc_auc_all']:.3f}",
          f"{w['roc_auc_second_half']:.3f}"],
         ["batch logistic regression, 5-fold CV", "{mean:.3f} ± {sd:.3f}".format(
             **b["logistic_regression_5fold"]), "—"],
         ["batch gradient boosting, 5-fold CV", "{mean:.3f} ± {sd:.3f}".format(
             **b["gradient_boosting_5fold"]), "—"]],
        caption=f"{w['profiles_scored']:,} profiles scored ({w['distinct_scores']:,} distinct "
                f"scores, {w['scored_at_0_5']:,} at 0.50); labels learned "
                f"{lab['learned_positive']:,} churned / {lab['learned_negative']:,} active; "
                f"batch baselines: {b['implementation']}")
    report.note(f"report: {path}")
    return result


if __name__ == "__main__":
    main()
