"""Smoke test of the end-to-end benchmark (`churnwatch bench`): a tiny configuration, a JSON
report with positive rates and the ratio key. Timings are never compared with targets here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_e2e

pytestmark = pytest.mark.integration


def test_bench_e2e_tiny(tmp_path: Path) -> None:
    result = bench_e2e.main([
        "--subscribers", "60", "--days", "40", "--latency-s", "1.5", "--naive-max-s", "4",
        "--out-dir", str(tmp_path), "--json"])
    path = Path(result["report_path"])
    assert path.parent == tmp_path and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert data["benchmark"] == "e2e"
    cw, naive, latency = data["churnwatch"], data["naive"], data["latency"]
    assert cw["events"] == data["feed"]["events"] > 0
    assert cw["events_per_s"] > 0 and naive["events_per_s_processed"] > 0
    assert naive["events_per_s"] is None or naive["events_per_s"] > 0
    assert "ratio" in data and "ratio_processed" in data
    assert data["ratio"] is None or data["ratio"] > 0
    assert {"features", "decide", "commit"} <= set(cw["stages"])
    assert latency["events"] > 0 and latency["offered_events_per_s"] > 0
    assert set(latency["alert_latency_ms"]) == {"p50", "p95", "p99", "max"}
