"""Smoke tests of the benchmarks: tiny sizes, a JSON report with the expected keys and positive
numbers. Timings are never compared with targets here (the machine is small and shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_features, bench_rules, profile_pipeline
from churnwatch.core.units import DAY_MS

pytestmark = pytest.mark.integration


def _load(result: dict, tmp_path: Path) -> dict:
    path = Path(result["report_path"])
    assert path.parent == tmp_path and path.suffix == ".json"
    return json.loads(path.read_text())


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_bench_features_smoke(tmp_path: Path) -> None:
    result = bench_features.main([
        "--subscribers", "200", "--events", "4000", "--batch", "2000", "--rounds", "1",
        "--naive-events", "200", "--out-dir", str(tmp_path)])
    data = _load(result, tmp_path)
    assert data["benchmark"] == "features"
    assert data["store_design"] and data["code_version"]["sha256"]
    assert {"cpu_count", "python", "numba", "redis_py", "redis_server"} <= set(data["machine"])
    assert data["targets"] == {"events_per_s": 150_000, "bytes_per_subscriber": 1024}
    [pop] = data["populations"]
    assert pop["subscribers"] == 200
    assert pop["persistence"]["appendonly"] == "yes"
    assert pop["persistence"]["appendfsync"] in ("everysec", "always", "no")

    batch, naive, memory = pop["batch_path"], pop["naive_per_event"], pop["memory"]
    for key in ("events_per_s_median", "events_per_s_best", "stage_only_events_per_s_median",
                "distinct_subscribers_per_batch"):
        assert _positive(batch[key]), key
    assert batch["round_trips_per_batch"] == 2
    [round_] = batch["rounds"]
    assert round_["events"] == round_["applied"] == 4000  # a clean in-order stream
    server = batch["server"]
    assert _positive(server["stage_server_us_per_event"])
    assert _positive(server["stage_call_wall_us_median"]) and _positive(server["ping_rtt_us_median"])
    profile = server["client_profile"]
    assert profile["top_own_time"] and _positive(profile["wall_us_per_event_profiled"])
    # 200 subscribers: 6 streams of 4,000 events (the rounds, the split, the profile ...)
    # cover days of event time, at the history's rate per subscriber
    assert pop["live_stream"]["event_time_days"] > 5 * 4000 / (200 * 2.08)
    overlapped = pop["overlapped_batch_path"]
    assert _positive(overlapped["client_cpu_us_per_event_median"])
    assert _positive(overlapped["server_cpu_us_per_event_median"])
    assert overlapped["rewrite_cpu_us_per_event_median"] >= 0
    assert _positive(naive["events_per_s_median"]) and naive["round_trips_per_event"] == 1
    assert naive["rounds"][0]["applied"] == 200
    assert _positive(pop["ratio_batch_over_naive"])

    assert memory["dbsize"] == 200 and memory["keys_per_subscriber"] == 1
    assert _positive(memory["used_memory_delta_per_subscriber"])
    assert _positive(memory["memory_usage_state_key_full_history"]["median"])
    assert _positive(memory["state_blob_bytes_median"])
    preload = pop["preload"]
    assert preload["not_applied_events"] == 0 and not preload["history_scaled_down"]
    assert preload["history_events_per_subscriber_full"] > 50


def test_the_live_stream_advances_at_the_historys_rate_per_subscriber() -> None:
    factory = bench_features.EventFactory(3)
    history = factory.history(np.arange(50), bench_features.T0 + 40 * DAY_MS, 40)
    per_day = (len(history) - 50) / (50 * 40)  # profiles aside
    assert abs(per_day - bench_features.EVENTS_PER_SUBSCRIBER_DAY) < 0.15
    assert factory.span_ms(2080, 1000) == DAY_MS
    assert factory.span_ms(2080, 10_000) == DAY_MS // 10


def test_bench_rules_smoke(tmp_path: Path) -> None:
    result = bench_rules.main(["--rows", "3000", "--reference-rows", "200", "--repeats", "2",
                               "--out-dir", str(tmp_path)])
    data = _load(result, tmp_path)
    assert data["benchmark"] == "rules"
    ruleset = data["ruleset"]
    assert ruleset["rule_evaluations_per_row"] == (
        ruleset["indicators"] + ruleset["rules"] + ruleset["segments"]) > 0
    assert _positive(data["compile_and_warmup_s"])
    for section in ("kernel", "kernel_batched", "kernel_bare", "reference"):
        assert _positive(data[section]["rows_per_s_median"]), section
        assert _positive(data[section]["rule_evaluations_per_s_median"]), section
    assert data["reference"]["rows"] == 200
    assert data["reference"]["agrees_with_kernel"] is True
    assert _positive(data["ratio_kernel_over_reference"])
    assert data["matrix"]["rows"] == 3000 and 0 < data["matrix"]["nan_share"] < 0.5
    assert any(rate > 0 for rate in data["matrix"]["rule_rates"].values())
    assert {"rule_evaluations_per_s", "speedup_over_reference"} <= set(data["targets"])


def test_profile_pipeline_smoke(tmp_path: Path) -> None:
    result = profile_pipeline.main(["--subscribers", "60", "--days", "40", "--batch", "1000",
                                    "--out-dir", str(tmp_path)])
    data = _load(result, tmp_path)
    assert data["feed"]["events"] > 1000 and _positive(data["unprofiled"]["events_per_s"])
    assert set(data["unprofiled"]["stages_s"]) >= {"features", "decide", "commit"}
    owners = [row[0] for row in data["self_time_by_module"]]
    repo = ("features/", "rules/", "alerting/", "streams/", "online_models/", "churnwatch/")
    assert len(owners) == len(set(owners)) and any(o.startswith(repo) for o in owners)
    assert sum(row[2] for row in data["self_time_by_module"]) <= 100.0
