"""The memory diagnostic: off by default, and when on it names what grew."""

from __future__ import annotations

import json
import sys
import tracemalloc

import pytest

from churnwatch.core.errors import ConfigError
from churnwatch.infra.config import Settings
from churnwatch.infra.runtime import memtrace
from churnwatch.infra.settings_load import load_settings


class Grower:
    """Objects this test piles up, to be found by type and allocation site."""

    def __init__(self) -> None:
        self.payload = bytearray(1000)


def test_off_by_default() -> None:
    assert Settings().memtrace_file is None
    assert memtrace.start(None, 30.0) is None
    assert not tracemalloc.is_tracing()


def test_a_bad_interval_is_rejected(tmp_path) -> None:
    with pytest.raises(ConfigError, match="memtrace.interval.s"):
        load_settings(memtrace_file=tmp_path / "m.jsonl", memtrace_interval_s=0)


def test_a_missing_directory_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        memtrace.start(tmp_path / "nope" / "m.jsonl", 30.0)


def test_growth_is_reported_by_type_and_site(tmp_path) -> None:
    out = tmp_path / "m.jsonl"
    trace = memtrace.start(out, 3600.0)
    assert trace is not None and tracemalloc.is_tracing()
    try:
        trace.sample()  # the baseline
        kept = [Grower() for _ in range(2000)]
        row = trace.sample()
    finally:
        trace.stop()
    assert not tracemalloc.is_tracing()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[1] == json.loads(json.dumps(row))
    assert rows[1]["rss"] > 0 and rows[1]["traced"] > rows[0]["traced"] + 2000 * 1000
    grown = dict(rows[1]["types_grown"])
    assert grown[f"{__name__}.Grower"] >= 2000
    top = rows[1]["sites_grown"][0]
    assert top["bytes"] >= 2000 * 1000 and top["count"] >= 2000
    assert any(at.startswith(__file__) for at in top["at"])
    if sys.platform == "linux":
        assert rows[1]["malloc"]["in_use"] > 0
    del kept
