"""The demo's model: its warm start and how much it adds to the rules.

``churnwatch demo`` simulates 1,000 subscribers, too few for the model to learn enough of
both outcomes during the run (and the rules' actions hide most churners' labels), so the
demo installs a shipped version trained on the same generator with another seed
(``churnwatch/data/demo_model.json``, built by ``python -m benchmarks.demo_model``) as the
first version of an empty model store: the worker scores with it from the first event and
its learner keeps learning from it. The document goes through the same strict validation as
any stored version (``online_models.model_state``).

The summary measures the model from the worker's own score records against the
simulation's truth: its ROC AUC on every scored event (positive: the subscriber churns
within the label horizon after it, as a ``churn`` label would mark that snapshot), and the
high-severity alerts of the rules alone against those of the rules and the model's rules.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from churnwatch.core.units import DAY_MS
from churnwatch.dev.simulate import Truth
from online_models.evaluate import roc_auc
from online_models.versions import ModelVersions
from rules.ruleset import Ruleset

MODEL_INPUTS = frozenset({"model_score", "model_positives", "model_negatives"})


def warm_start_document() -> bytes:
    """The shipped warm-start model document (package data)."""
    return resources.files("churnwatch").joinpath("data/demo_model.json").read_bytes().strip()


async def install_warm_start(redis: Any) -> str | None:
    """Install the shipped model as the first version (validated as any stored version);
    None if the store already has a model (it is left as it is)."""
    return await ModelVersions(redis).install(warm_start_document(), int(time.time() * 1000))


def model_rules(ruleset: Ruleset) -> frozenset[str]:
    """Rules that read the model (through any of their indicators, directly or not)."""
    reads: dict[str, bool] = {}
    for ind in ruleset.indicators:  # in order: an indicator uses only earlier ones
        names = {n.id for n in ast.walk(ind.tree) if isinstance(n, ast.Name)}
        reads[ind.name] = bool(names & MODEL_INPUTS) or any(reads.get(n, False) for n in names)
    return frozenset(r.id for r in ruleset.rules if any(reads.get(i, False) for i in r.of))


def read_scores(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(subscriber, ts, score) of every score record in a JSONL file."""
    sids, ts, scores = [], [], []
    if path.exists():
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    r = orjson.loads(line)
                    sids.append(r["subscriber_id"])
                    ts.append(r["ts"])
                    scores.append(r["score"])
    return sids, np.array(ts, dtype=np.int64), np.array(scores, dtype=np.float64)


def _pr(alerted: set[str], caught: set[str], churners: int) -> dict[str, Any]:
    return {"alerted": len(alerted), "caught": len(caught),
            "precision": round(len(caught) / len(alerted), 3) if alerted else None,
            "recall": round(len(caught) / churners, 3) if churners else None}


def first_alerts(alerts: Iterable[dict], rules: frozenset[str]) -> dict[str, int]:
    """Each subscriber's first alert time among alerts fired by any of ``rules``."""
    first: dict[str, int] = {}
    for a in alerts:
        if rules.intersection(a["rules"]):
            sid = a["subscriber_id"]
            first[sid] = min(a["ts"], first.get(sid, a["ts"]))
    return first


def model_figures(truth: Truth, start_ms: int, alerts: Sequence[dict], ruleset: Ruleset,
                  scores: tuple[list[str], np.ndarray, np.ndarray],
                  horizon_ms: int) -> dict[str, Any]:
    """The model's ROC AUC on the score records, and the high alerts of the rules alone
    against the rules and the model (as shipped, and at the rules' own precision)."""
    churn_ms = {sid: start_ms + (day + 1) * DAY_MS for sid, day in truth.churn_day.items()}
    n_churners = len(truth.churners)
    sids, ts, score = scores
    end = np.array([churn_ms.get(s, -1) for s in sids], dtype=np.int64)
    churner = end >= 0
    positive = churner & (ts <= end) & (ts >= end - horizon_ms)
    before = ~churner | (ts <= end)
    model = model_rules(ruleset)
    high = frozenset(r.id for r in ruleset.rules if r.severity == "high" and not r.shadow)

    def caught(first: dict[str, int]) -> set[str]:
        return {s for s, t in first.items() if s in truth.churners and t <= churn_ms[s]}

    rules_first = first_alerts(alerts, high - model)
    both_first = first_alerts(alerts, high)
    rules_caught, both_caught = caught(rules_first), caught(both_first)
    out: dict[str, Any] = {
        "score_records": int(len(score)),
        "scored_at_0_5": int(np.sum(score == 0.5)),
        "model_roc_auc": None if not len(score) else roc_auc(score, positive),
        "rules_only": _pr(set(rules_first), rules_caught, n_churners),
        "rules_and_model": _pr(set(both_first), both_caught, n_churners),
        "model_alerts": sum(1 for a in alerts if model.intersection(a["rules"])),
        # subscribers alerted by the model's rules at any severity (medium: the model alone)
        "model_rules": _pr(set(model_first := first_alerts(alerts, model)),
                           caught(model_first), n_churners),
        # an untrained model gives no reason (all its weights are 0)
        "alerts_without_model_reason": sum(
            1 for a in alerts if not any(r.get("kind") == "model" for r in a["reasons"])),
    }
    out["added_recall"] = _added(out["rules_only"], out["rules_and_model"])
    # the model's score alone (its peak before churn) added to the rules' high alerts at the
    # lowest threshold keeping the rules' precision, chosen on this run
    peak: dict[str, float] = {}
    for s, p in zip((s for s, b in zip(sids, before) if b), score[before]):
        if p > peak.get(s, -1.0):
            peak[s] = p
    out["at_rules_precision"] = _at_precision(set(rules_first), rules_caught, peak,
                                              truth.churners, out["rules_only"]["precision"])
    return out


def _added(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    if base["recall"] is None or more["recall"] is None:
        return {"recall": None, "precision": None}
    return {"recall": round(more["recall"] - base["recall"], 3),
            "precision": None if base["precision"] is None or more["precision"] is None
            else round(more["precision"] - base["precision"], 3)}


def _at_precision(alerted: set[str], caught: set[str], peak: dict[str, float],
                  churners: frozenset[str], precision: float | None) -> dict[str, Any]:
    """Add subscribers by peak score, highest first, down to the lowest threshold at which
    the rules' alerts plus them keep ``precision``; what that adds."""
    best: dict[str, Any] = {"threshold": None, "added_churners": 0, "added_false_alarms": 0,
                            "recall": round(len(caught) / len(churners), 3) if churners else None}
    if precision is None or not churners:
        return best
    extra = sorted(((p, s) for s, p in peak.items() if s not in alerted), reverse=True)
    hits, alarms = len(caught), len(alerted)
    added_hits = added_alarms = 0
    for k, (p, s) in enumerate(extra):
        hit = s in churners
        added_hits += hit
        added_alarms += not hit
        tied = k + 1 < len(extra) and extra[k + 1][0] == p
        if not tied and (hits + added_hits) / (alarms + added_hits + added_alarms) >= precision:
            best = {"threshold": round(float(p), 4), "added_churners": added_hits,
                    "added_false_alarms": added_alarms,
                    "recall": round((hits + added_hits) / len(churners), 3)}
    return best
