"""Benchmark summaries (markdown + PNG) and the soak's memory-growth arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_soak, summary


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


def test_soak_slope_and_summary() -> None:
    flat = [{"t": t, "rss_bytes": 100e6, "processed": t * 10, "sent": t * 10,
             "redis_used_memory": 1e6} for t in range(0, 600, 5)]
    growing = [dict(s, rss_bytes=100e6 + s["t"] * 1e4) for s in flat]  # 10 kB/s = 6 MB/10 min
    assert bench_soak.slope_mb_per_10min(flat) == pytest.approx(0.0, abs=1e-9)
    assert bench_soak.slope_mb_per_10min(growing) == pytest.approx(6.0)
    s = bench_soak.summarise(growing, 600, 10)
    assert s["rss_slope_mb_per_10min_after_warmup"] == pytest.approx(6.0)
    assert s["rss_mb_after_warmup"] == pytest.approx(101.2) and s["events_sent"] == 5950
