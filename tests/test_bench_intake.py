"""Smoke test of the intake benchmark (`churnwatch bench --scenario intake`): a tiny feed
written one event per message by confluent-kafka (lz4), drained by the worker, the naive app,
Quix Streams (skipped without its venv) and, packed, by the worker again. Checks the report's
structure and that every design consumed every event; timings are never compared here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_intake

pytestmark = pytest.mark.integration


def test_bench_intake_tiny(tmp_path: Path) -> None:
    result = bench_intake.main(["--size", "tiny", "--stall-s", "60", "--out-dir", str(tmp_path),
                                "--latency-s", "3", "--json"])
    path = Path(result["report_path"])
    assert path.parent == tmp_path and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert data["benchmark"] == "intake"
    events = data["feed"]["events"]
    assert events > 0
    (run,) = data["runs"]
    producer = run["producer"]
    assert producer["messages"] == events and producer["compression"] == "lz4"
    assert sum(producer["per_partition"].values()) == events
    for design in ("churnwatch", "naive", "quix", "packed"):
        r = run[design]
        if design == "quix" and r["outcome"] == "skipped":  # no Quix venv on this machine
            continue
        assert r["outcome"] == "complete", (design, r)
        assert r["events"] == r["events_committed"] == events, design
        assert r["events_processed"] == events, design
        assert r["events_per_s"] > 0 and r["startup_s"] >= 0
        assert set(r) >= {"elapsed_committed_s", "elapsed_processed_s", "events_per_s_processed",
                          "first_processed_s"}
    assert run["churnwatch"]["mean_events_per_batch"] > 0
    assert run["packed"]["messages"] < events  # many events per message
    assert run["churnwatch"]["counts"]["events_applied"] > 0
    # librdkafka's partitioner puts most events away from home; one worker owns every home
    # partition, so it applies them where they arrive and forwards nothing
    assert run["churnwatch"]["forwarded_events"] == 0
    assert run["churnwatch"]["away_applied_events"] > events / 2
    latency = run["churnwatch"]["latency"]
    assert latency["events"] > 0 and latency["window_s"] > 0
    assert set(latency["alert_latency_ms"]) == {"p50", "p95", "p99", "max"}
    summary = data["summary"]
    assert set(summary["ratios"]) == {"churnwatch_over_naive", "churnwatch_over_quix",
                                      "packed_over_churnwatch"}
    assert summary["churnwatch"]["median_events_per_s"] > 0


def test_crash_cause_names_the_missing_codec(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("starting\n  File \"aiokafka/record/_crecords/default_records.pyx\", line 125\n"
                   "aiokafka.errors.UnsupportedCodecError: UnsupportedCodecError: Libraries for "
                   "lz4 compression codec not found\nstopping\n")
    cause = bench_intake.crash_cause(log)
    assert cause is not None and "lz4" in cause and "UnsupportedCodecError" in cause
    assert any("lz4" in line for line in bench_intake.log_excerpt(log))
    assert bench_intake.crash_cause(tmp_path / "missing.log") is None
