"""A worker that stalls in the middle of a batch commit, past its session timeout, loses its
partitions to another worker; when it resumes, its commit must be refused (fenced), never
overwrite the new owner's states. The whole history must still equal the oracle."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import PARTITIONS, feed, group_of, wait_serving
from tests.support.history import check_history, oracle
from tests.support.producers import produce_events

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_stalled_former_owner_cannot_overwrite_newer_state(broker, redis_url,
                                                            tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = feed(subscribers=60, seed=3)
    expected = oracle(lines)
    stalled, other = group_of(2, broker, redis_url, tmp_path)
    marker = tmp_path / "stalled"
    # the stalled worker stops itself at its 3rd batch commit: staged, ownership checked
    # (WATCHed), nothing written yet
    stalled.env["CHURNWATCH_FAILPOINT"] = f"before_redis_write:{marker}:3:stop"
    client = redis.Redis.from_url(redis_url)
    owners = Keys().partition_owners(stalled.app_id)
    try:
        stalled.start()
        wait_serving(stalled)
        produce_events(broker.bootstrap, EVENTS_TOPIC, lines, compression="lz4")
        _wait(marker.exists, 60, "the stalled worker to stop itself")
        claims = client.hgetall(owners)
        other.start()  # takes every partition once the stalled one's session times out
        _wait(lambda: all(client.hget(owners, k) != v for k, v in claims.items()), 60,
              "the other worker to claim every partition")
        assert stalled.proc is not None
        os.kill(stalled.proc.pid, signal.SIGCONT)  # resumes right before its EXEC
        _wait(lambda: (stalled.metric("churnwatch_fenced_batches_total") or 0) >= 1, 60,
              "the resumed worker's commit to be refused")
        for w in (stalled, other):
            w.wait_caught_up(timeout=180)
    finally:
        for w in (stalled, other):
            if w.proc is not None and w.proc.poll() is None:
                os.kill(w.proc.pid, signal.SIGCONT)
            w.stop()
        client.close()
    history = check_history(broker.bootstrap, redis_url, stalled.app_id, expected)
    assert history.lost == 0 and history.duplicated_actions == 0
