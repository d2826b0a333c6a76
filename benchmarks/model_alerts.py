"""Per-subscriber alerts from a replay's score records: the operators' rule against the rule
or the model, the model alert's threshold and smoothing, and how sure the difference is.
Pure (numpy); used by ``benchmarks.bench_model``."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ScoreLog:
    """Every score record, compactly (millions of rows at 5,000 subscribers): the
    subscriber's index, event time, raw score, the two rule flags and the batch, whose label
    counts (``counts``) say whether a warm-up guard was met when the row was scored."""

    sid: array = field(default_factory=lambda: array("i"))
    ts: array = field(default_factory=lambda: array("q"))
    score: array = field(default_factory=lambda: array("f"))
    rule: array = field(default_factory=lambda: array("b"))
    one: array = field(default_factory=lambda: array("b"))
    batch: array = field(default_factory=lambda: array("i"))
    counts: list[tuple[int, int]] = field(default_factory=list)  # learned (pos, neg) per batch

    def add(self, sid: int, ts: int, score: float, rule: bool, one: bool) -> None:
        self.sid.append(sid)
        self.ts.append(ts)
        self.score.append(score)
        self.rule.append(rule)
        self.one.append(one)
        self.batch.append(len(self.counts))


@dataclass(frozen=True)
class Rows:
    """The score records as arrays, grouped by subscriber (stable: in scoring order), with
    only the rows before the subscriber's churn event (alerts after it are too late)."""

    sid: np.ndarray
    day: np.ndarray
    score: np.ndarray
    rule: np.ndarray
    one: np.ndarray
    positives: np.ndarray  # labels learned when the row was scored
    negatives: np.ndarray
    subscribers: int

    @classmethod
    def of(cls, log: ScoreLog, cutoff: np.ndarray) -> Rows:
        """``cutoff[k]``: subscriber k's churn time (rows from then on are dropped)."""
        sid = np.frombuffer(log.sid, np.int32)
        ts = np.frombuffer(log.ts, np.int64)
        keep = ts < cutoff[sid]
        order = np.argsort(sid[keep], kind="stable")
        # a batch is scored with what the batches before it taught
        counts = np.array([(0, 0), *log.counts], np.int64)
        batch = np.frombuffer(log.batch, np.int32)[keep][order]
        return cls(sid[keep][order], ts[keep][order] // 86_400_000,
                   np.frombuffer(log.score, np.float32)[keep][order],
                   np.frombuffer(log.rule, np.int8)[keep][order] > 0,
                   np.frombuffer(log.one, np.int8)[keep][order] > 0,
                   counts[batch, 0], counts[batch, 1], len(cutoff))

    def rule_flags(self) -> np.ndarray:
        """Per subscriber: the operators' rule alerted before its churn."""
        out = np.zeros(self.subscribers, bool)
        out[self.sid[self.rule]] = True
        return out

    def model_peak(self, guard: int, run: int, confirm: bool = False,
                   days: bool = False) -> np.ndarray:
        """Per subscriber: the highest score the model kept over ``run`` consecutive scored
        events (with ``days``: ``run`` consecutive calendar days, each day's highest score),
        i.e. the run's minimum, counting only rows scored once ≥ ``guard`` labels of each
        kind were learned (with ``confirm``: rows where one operator indicator holds). A
        model alert at θ fires for the subscriber iff its peak ≥ θ; -1: never eligible."""
        ok = (self.positives >= guard) & (self.negatives >= guard)
        if confirm:
            ok &= self.one
        s = np.where(ok, self.score, -1.0)
        sid, day = self.sid, self.day
        if days:  # one value per (subscriber, day): the day's highest
            order = np.lexsort((day, sid))
            sid, day, s = sid[order], day[order], s[order]
            start = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (day[1:] != day[:-1])])
            s = np.maximum.reduceat(s, start)
            sid, day = sid[start], day[start]
        held = s.copy()
        for lag in range(1, run):
            prev = np.full_like(s, -1.0)
            same = sid[lag:] == sid[:-lag]
            if days:
                same &= day[lag:] == day[:-lag] + lag
            prev[lag:] = np.where(same, s[:-lag], -1.0)
            held = np.minimum(held, prev)
        out = np.full(self.subscribers, -1.0)
        np.maximum.at(out, sid, held)
        return out


def pr(flagged: np.ndarray, churner: np.ndarray, members: np.ndarray) -> dict[str, Any]:
    alerted = int((flagged & members).sum())
    churners = int((churner & members).sum())
    hits = int((flagged & churner & members).sum())
    return {"alerted": alerted, "caught": hits, "churners": churners,
            "precision": round(hits / alerted, 4) if alerted else None,
            "recall": round(hits / churners, 4) if churners else None}


THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.01), 2).tolist()


def with_model(rules: np.ndarray, peak: np.ndarray, churner: np.ndarray,
                halves: Sequence[np.ndarray]) -> dict[str, Any]:
    """Rules or model: θ chosen on the calibration half (the lowest keeping the rules'
    precision there), reported on the evaluation half, with what the model added there and
    a bootstrap of the differences; also at the shipped θ 0.85."""
    base = pr(rules, churner, halves[0])["precision"] or 0.0
    chosen = next((t for t in THRESHOLDS
                   if (pr(rules | (peak >= t), churner, halves[0])["precision"] or 0.0)
                   >= base), None)
    out: dict[str, Any] = {"threshold": chosen}
    if chosen is not None:
        flagged = rules | (peak >= chosen)
        out["calibration_half"] = pr(flagged, churner, halves[0])
        out["evaluation_half"] = pr(flagged, churner, halves[1])
        added = flagged & ~rules & halves[1]
        out["added_on_evaluation_half"] = {"churners": int((added & churner).sum()),
                                           "false_alarms": int((added & ~churner).sum())}
        out["bootstrap_evaluation_half"] = bootstrap(rules, flagged, churner, halves[1])
    out["shipped_0.85_evaluation_half"] = pr(rules | (peak >= 0.85), churner, halves[1])
    return out


def bootstrap(rules: np.ndarray, flagged: np.ndarray, churner: np.ndarray,
               members: np.ndarray, resamples: int = 2000) -> dict[str, Any]:
    """Differences (rules or model − rules alone) in precision and recall on ``members``,
    resampling subscribers (Poisson bootstrap, seeded): 95 % intervals and the share of
    resamples where the model adds recall without losing precision."""
    idx = np.flatnonzero(members)
    w = np.random.default_rng(0).poisson(1.0, (resamples, idx.size)).astype(np.float64)
    c, r, f = churner[idx], rules[idx], flagged[idx]
    churners = w @ c
    with np.errstate(invalid="ignore", divide="ignore"):
        d_recall = (w @ (f & c) - w @ (r & c)) / churners
        d_precision = (w @ (f & c)) / (w @ f) - (w @ (r & c)) / (w @ r)
    ok = np.isfinite(d_recall) & np.isfinite(d_precision)
    d_recall, d_precision = d_recall[ok], d_precision[ok]
    return {"recall_gain_95": [round(float(np.percentile(d_recall, q)), 4) for q in (2.5, 97.5)],
            "precision_change_95": [round(float(np.percentile(d_precision, q)), 4)
                                    for q in (2.5, 97.5)],
            "share_recall_up_precision_kept": round(float(np.mean(
                (d_recall > 0) & (d_precision >= 0))), 3)}


def at_threshold(rules: np.ndarray, peak: np.ndarray, theta: float, churner: np.ndarray,
        members: np.ndarray) -> dict[str, Any]:
    """Rules or model at a fixed θ (tuned elsewhere): every subscriber counts."""
    flagged = rules | (peak >= theta)
    added = flagged & ~rules & members
    return {"threshold": theta, "all": pr(flagged, churner, members),
            "added": {"churners": int((added & churner).sum()),
                      "false_alarms": int((added & ~churner).sum())},
            "bootstrap": bootstrap(rules, flagged, churner, members)}
