"""Benchmark summaries (markdown + PNG) and the soak's memory-growth arithmetic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import bench_soak, summary
from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev.simulate import SimConfig, Simulation
from features.kernel import DAY_MS


def _point(curve: str, x: int, rate: int) -> dict:
    point = {"curve": curve, "subscribers": 1000, "days": 5, "per_message": 500, "partitions": 4}
    point[curve] = x
    return {"point": point, "events": 10_000, "events_per_s": rate,
            "events_per_s_processed": rate + 1, "mean_events_per_batch": 900.0, "stages": {}}


def test_curves_summary_has_a_table_and_a_plot_per_curve(tmp_path: Path) -> None:
    result = {"created": "now", "machine": {"cpu_count": 2}, "code_version": {"head": "abc"},
              "points": [_point("subscribers", 100_000, 30_000), _point("subscribers", 10_000,
                                                                        40_000),
                         _point("partitions", 4, 35_000)],
              "failed_points": [{"point": {"curve": "subscribers", "subscribers": 10**6},
                                 "error": "the worker exited during the throughput run:\nlog"}]}
    md, pngs = summary.write_curves(result, tmp_path / "curves-x.json")
    text = md.read_text()
    assert "## events/s by subscribers" in text and "## events/s by partitions" in text
    assert "the worker exited during the throughput run" in text.split("## Points that failed")[1]
    rows = [line for line in text.splitlines() if line.startswith("| 10")]
    assert rows[0].startswith("| 10,000 | 10,000 | 40,000") and rows[1].startswith("| 100,000")
    assert sorted(p.name for p in pngs) == ["curves-x-partitions.png", "curves-x-subscribers.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def _soak_samples(phase: str, times: range, rss: float, per_s: float) -> list[dict]:
    return [{"t": t, "phase": phase, "rss_bytes": rss + (t - times[0]) * per_s, "heap_bytes": 5e7,
             "processed": t * 10, "batches": t, "sent": t * 10 + 30, "redis_used_memory": 1e6}
            for t in times]


def test_soak_slope_and_summary_over_the_measured_phase() -> None:
    # a warm-up that grows 100 MB, then a measured phase growing 10 kB/s = 6 MB/10 min
    warm = _soak_samples("warmup", range(0, 100, 5), 100e6, 1e6)
    measured = _soak_samples("measured", range(100, 700, 5), 250e6, 1e4)
    flat = [dict(s, rss_bytes=100e6) for s in measured]
    assert bench_soak.slope_mb_per_10min(flat) == pytest.approx(0.0, abs=1e-9)
    assert bench_soak.slope_mb_per_10min(measured) == pytest.approx(6.0)
    s = bench_soak.summarise(warm + measured, 10)
    assert s["rss_slope_mb_per_10min_after_warmup"] == pytest.approx(6.0)
    assert s["rss_slope_mb_per_10min_by_thirds"] == pytest.approx([6.0, 6.0, 6.0])
    assert s["rss_mb_after_warmup"] == 250.0 and s["rss_mb_end"] == pytest.approx(255.9)
    assert s["warmup_rss_mb_max"] == pytest.approx(195.0) and s["warmup_seconds"] == 100
    assert s["warmup_events"] == 1030 and s["events_sent"] == 5950
    assert s["events_processed"] == 5950 and s["max_backlog"] == 30
    assert s["mean_events_per_batch"] == 10.0 and s["seconds"] == 595
    with pytest.raises(ChurnwatchError, match="measured phase"):
        bench_soak.summarise(warm, 10)


def test_soak_feed_splits_at_the_warmup_boundary_and_lasts() -> None:
    events = [{"ts": 5}, {"ts": "not-a-time"}, {"ts": 9}, {"ts": 10}, {"ts": 7}, {"ts": 11}]
    before, after = bench_soak.split_at(iter(events), 10)
    assert list(before) == events[:3] and list(after) == events[3:]
    shape = bench_soak.plan(5000, 600)
    assert shape.warmup_days >= 6 * 31 and shape.measured_days == bench_soak.MEASURED_DAYS
    # the measured phase's days hold its events with a margin
    assert (shape.subscribers * shape.measured_days * bench_soak.EVENTS_PER_SUBSCRIBER_DAY
            > 5000 * 600 * 1.1)
    # the simulator's measured days hold the events the sizing counts on, with a margin left
    days = shape.warmup_days + shape.measured_days
    sim = Simulation(SimConfig(subscribers=300, days=days, seed=11, churn_rate=0.08,
                               duplicate_rate=0.01, invalid_rate=0.002, out_of_order_rate=0.01))
    start_ms = int(sim.cfg.start.timestamp() * 1000)
    warm, rest = bench_soak.split_at(sim.events(), start_ms + shape.warmup_days * DAY_MS)
    assert sum(1 for _ in warm) > 300 * shape.warmup_days
    per_subscriber_day = sum(1 for _ in rest) / (300 * shape.measured_days)
    assert (per_subscriber_day * bench_soak.FEED_MARGIN
            > bench_soak.EVENTS_PER_SUBSCRIBER_DAY * 1.05)
    with pytest.raises(ChurnwatchError, match="--measured-days"):
        bench_soak.plan(5000, 600, measured_days=0)
    with pytest.raises(ChurnwatchError, match="--warmup-backlog"):
        bench_soak.plan(5000, 600, warmup_backlog=0)


def test_soak_reads_a_process_heap_and_rss() -> None:
    rss, heap = bench_soak.rss_bytes(os.getpid()), bench_soak.heap_bytes(os.getpid())
    assert 0 < heap < rss
