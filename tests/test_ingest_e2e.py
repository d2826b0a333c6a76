"""The HTTP ingest end to end: an alert through a real worker (a resent batch changes
nothing), and schemathesis against /openapi.json finding no server error or schema violation."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from churnwatch.dev.embedded import EmbeddedBroker
from tests.support.ingest import (
    AUTH,
    FEED,
    TOKEN,
    _start_ingest,
    _stop,
    _tokens,
    topics,  # noqa: F401  (a fixture)
)
from tests.support.stream_feed import Feed
from tests.support.worker import Worker


def test_end_to_end_alert_through_ingest_and_a_resent_batch_changes_nothing(
        worker: Worker, tmp_path: Path) -> None:
    feed = Feed()
    feed.logins("+447700900031", 20, 1)
    feed.complaints("+447700900031", 2)
    feed.logins("+447700900032", 20, 2)  # two recent logins: no login drop, no alert
    feed.complaints("+447700900032", 2)
    path = feed.write(tmp_path / "events.ndjson")
    env = dict(worker.env, CHURNWATCH_INGEST_TOKENS_FILE=str(
        _tokens(tmp_path / "tokens.toml", {TOKEN: FEED})))
    proc, url = _start_ingest(env, tmp_path / "ingest.log")
    try:
        worker.start()
        out = worker.cli("send", str(path), "--url", url, "--token", TOKEN, "--batch", "7",
                         "--json")
        assert out.returncode == 0, out.stderr.decode()
        report = orjson.loads(out.stdout)
        assert report["accepted"] == report["events"] == len(feed.events)
        assert report["batches"] == -(-len(feed.events) // 7)
        worker.wait_caught_up()
        first = worker.alerts()
        assert [(a["subscriber_id"], a["severity"]) for a in first] == [("+447700900031", "high")]
        scored = len(worker.scores())
        out = subprocess.run(  # again, from stdin, the token from the environment
            [sys.executable, "-m", "churnwatch", "send", "-", "--url", url, "--batch", "1000",
             "--json"], env={**worker.env, "CHURNWATCH_SEND_TOKEN": TOKEN},
            input=path.read_bytes(), capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        assert orjson.loads(out.stdout)["accepted"] == len(feed.events)
        worker.wait_caught_up()
        assert worker.alerts() == first
        assert len(worker.scores()) == scored  # duplicates are not scored again
        bad = worker.cli("send", str(path), "--url", url, "--token", "nope")
        assert bad.returncode == 1 and b"401" in bad.stderr and b"nope" not in bad.stderr
    finally:
        _stop(proc)
    log = (tmp_path / "ingest.log").read_text()
    assert TOKEN not in log and "+447700900031" not in log


def test_schemathesis_finds_no_server_error_or_schema_violation(
        topics: EmbeddedBroker, tmp_path: Path) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    env = dict(os.environ, CHURNWATCH_BROKER=topics.url, CHURNWATCH_PARTITIONS="2",
               CHURNWATCH_INGEST_TOKENS_FILE=str(_tokens(tmp_path / "t.toml", {TOKEN: FEED})),
               CHURNWATCH_INGEST_RATE_PER_FEED="0")
    proc, url = _start_ingest(env, tmp_path / "ingest.log")
    try:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")

        @schemathesis.serializer("application/x-ndjson")
        def ndjson(ctx, value) -> bytes:
            return value if isinstance(value, bytes) else str(value).encode()

        checks = [not_a_server_error, status_code_conformance, content_type_conformance,
                  response_headers_conformance, response_schema_conformance]
        modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        strategies = []
        for result in schema.get_all_operations():
            operation = result.ok()
            media = ([None] if operation.method.upper() == "GET"
                     else ["application/json", "application/x-ndjson"])
            strategies += [operation.as_strategy(mode, media_type=m) for mode in modes
                           for m in media]
        calls: list[int] = []

        @hsettings(max_examples=200, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def check(case) -> None:
            response = case.call_and_validate(base_url=url, headers=AUTH, checks=checks)
            calls.append(response.status_code)

        check()
        counts = collections.Counter(calls)
        assert counts[200] and not [c for c in counts if c >= 500], counts
    finally:
        _stop(proc)
