"""The model-vs-rules benchmark's scoring: smoothed model alerts per subscriber, the warm-up
guard, the calibration-half threshold and the bootstrap of the differences (pure), and a
tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_model
from benchmarks.model_alerts import Rows, ScoreLog, bootstrap, pr, with_model

DAY = 86_400_000


def _rows(records: list[tuple[str, int, float]], counts: list[tuple[int, int]],
          batches: list[int], cutoff: dict[str, int] | None = None) -> Rows:
    """Rows from (subscriber, ts, score) records scored in the given batches."""
    ids = sorted({sid for sid, _, _ in records})
    index = {sid: k for k, sid in enumerate(ids)}
    log = ScoreLog()
    for (sid, ts, score), batch in zip(records, batches):
        log.add(index[sid], ts, score, False, sid == "b")
        log.batch[-1] = batch  # as if scored after ``batch`` batches had been learned
    log.counts = counts
    cut = np.array([(cutoff or {}).get(sid, 1 << 62) for sid in ids], np.int64)
    return Rows.of(log, cut)


def test_peaks_hold_over_runs_of_events_or_days_after_the_guard() -> None:
    # a: one spike of 0.9 between 0.2s; then 0.8 on two consecutive days, 0.7 on a third
    # b: 0.6 on three events of one day; c: 0.95 only before the guard was met
    records = [("a", 0, 0.2), ("a", 1, 0.9), ("a", 2, 0.2), ("a", 5 * DAY, 0.8),
               ("a", 6 * DAY, 0.8), ("a", 7 * DAY, 0.7),
               ("b", DAY, 0.6), ("b", DAY + 1, 0.6), ("b", DAY + 2, 0.6),
               ("c", 0, 0.95), ("c", 9 * DAY, 0.1)]
    batches = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]  # batch 0 is scored before any label
    rows = _rows(records, [(100, 100), (100, 100)], batches)
    a, b, c = 0, 1, 2
    peak = rows.model_peak(100, 1)
    assert peak[[a, b, c]].round(3).tolist() == [0.9, 0.6, 0.1]
    assert rows.model_peak(100, 2)[a].round(3) == 0.8  # the spike alone does not hold
    assert rows.model_peak(100, 3, days=True)[a].round(3) == 0.7  # days 5, 6, 7
    assert rows.model_peak(100, 2, days=True)[b] == -1  # one day only
    assert rows.model_peak(100, 3)[b].round(3) == 0.6  # three events that day
    assert rows.model_peak(100, 1, confirm=True)[[a, b]].round(3).tolist() == [-1, 0.6]
    assert rows.model_peak(101, 1).tolist() == [-1, -1, -1]  # the guard is never met


def test_rows_after_the_churn_event_do_not_count() -> None:
    rows = _rows([("a", 0, 0.3), ("a", 10, 0.9)], [(100, 100)], [1, 1], cutoff={"a": 10})
    assert rows.model_peak(0, 1).round(3).tolist() == [0.3]


def test_threshold_from_the_calibration_half_and_bootstrap_of_the_evaluation_half() -> None:
    n = 400
    rng = np.random.default_rng(1)
    churner = rng.random(n) < 0.3
    rules = churner & (rng.random(n) < 0.6) | ~churner & (rng.random(n) < 0.05)
    peak = np.where(churner, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.8, n))
    halves = [np.arange(n) % 2 == 0, np.arange(n) % 2 == 1]
    out = with_model(rules, peak, churner, halves)
    t = out["threshold"]
    assert t is not None
    base = pr(rules, churner, halves[0])["precision"]
    assert out["calibration_half"]["precision"] >= base
    # the lowest such threshold: one step lower loses the rules' precision
    lower = round(t - 0.01, 2)
    assert pr(rules | (peak >= lower), churner, halves[0])["precision"] < base
    flagged = rules | (peak >= t)
    assert out["evaluation_half"] == pr(flagged, churner, halves[1])
    added = out["added_on_evaluation_half"]
    assert added["churners"] == int((flagged & ~rules & churner & halves[1]).sum()) > 0
    boot = bootstrap(rules, flagged, churner, halves[1])
    low, high = boot["recall_gain_95"]
    assert 0 <= low <= high and high > 0  # added churners only ever raise recall
    assert 0.0 <= boot["share_recall_up_precision_kept"] <= 1.0
    assert bootstrap(rules, rules, churner, halves[1])["share_recall_up_precision_kept"] == 0


@pytest.mark.integration
def test_bench_model_smoke() -> None:
    report = bench_model.run(subscribers=150, days=70, seed=3, holdout=1.0, batch=2000)
    assert report["events"] > 0 and report["churners"] > 0
    assert report["memory"]["record_bytes_max"] < 400
    assert len(report["variants"]) == 2 * len(bench_model.GUARDS) * (
        len(bench_model.RUNS) + len(bench_model.DAY_RUNS))
    assert set(report["shipped"]) == {"alone", "confirms_indicator"}
    assert report["shipped"]["alone"]["all"]["churners"] == report["churners"]
    assert report["rules_only"]["all"]["churners"] == report["churners"]
