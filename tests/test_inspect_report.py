"""`churnwatch inspect --json` always carries every documented key (docs/contract.md §5) with
numbers: features of a subscriber whose windows are still filling are numbers (and named in
``missing_features``), the score is a number before the first model version (what the
workers score with), and a subscriber never seen gets the documented values."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from features.schema import FEATURES
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration

KEYS = {"subscriber_id", "known", "features", "missing_features", "attrs", "indicators",
        "segment", "score", "model_version", "severity", "rules", "ruleset_version", "alerts"}
CONTRACT_INDICATORS = {"spend_decline", "login_drop", "complaints"}


def _numbers(report: dict) -> None:
    assert set(report) == KEYS
    assert list(report["features"]) == list(FEATURES)
    for name, value in report["features"].items():
        assert isinstance(value, float) and math.isfinite(value), name
    assert set(report["missing_features"]) <= set(FEATURES)
    assert isinstance(report["score"], float) and 0.0 <= report["score"] <= 1.0
    assert CONTRACT_INDICATORS <= set(report["indicators"])
    assert all(isinstance(v, bool) for v in report["indicators"].values())
    assert isinstance(report["segment"], str) and report["segment"]
    assert isinstance(report["model_version"], str) and isinstance(report["ruleset_version"], str)


def test_reports_carry_every_key_with_numbers(worker: Worker, tmp_path: Path) -> None:
    worker.env["CHURNWATCH_MODEL_LEARNER"] = "false"  # no model version is ever published
    never = orjson.loads(worker.cli("inspect", "+447700900777", "--json").stdout)
    _numbers(never)
    assert never["known"] is False and never["segment"] == "unknown" and never["score"] == 0.0
    assert never["missing_features"] == list(FEATURES)
    assert set(never["features"].values()) == {0.0}
    assert not any(never["indicators"].values())
    assert (never["severity"], never["rules"], never["alerts"], never["attrs"]) == (
        None, [], [], {})

    feed = Feed()
    feed.add("+447700900778", "login", NOW - 3_600_000, channel="app")  # one event: windows fill
    try:
        worker.start()
        assert worker.cli("replay", str(feed.write(tmp_path / "f.ndjson"))).returncode == 0
        worker.wait_caught_up()
    finally:
        worker.stop()
    out = worker.cli("inspect", "+44 7700 900778", "--json")
    assert out.returncode == 0, out.stderr.decode()
    report = orjson.loads(out.stdout)
    _numbers(report)
    assert report["known"] is True and report["subscriber_id"] == "+447700900778"
    assert report["missing_features"], "a subscriber with one login has windows still filling"
    assert report["score"] == 0.5  # the untrained model the workers score with
    assert report["model_version"] == "lr-2"
    assert b"null" not in out.stdout.replace(b'"severity": null', b"")
