"""A restarted memory-only broker (every topic and committed offset lost) is detected and
reported loudly: ERROR log, exit code 3, and every later start refuses until an operator runs
`churnwatch broker accept-reset`; never a silent start-over from reset offsets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.broker_guard import EXIT_CODE, Offsets, regressions
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import feed, produce
from tests.support.history import error_lines
from tests.support.worker import Worker


def _topics(bootstrap: str) -> None:
    asyncio.run(create_topics(bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                        SCORES_TOPIC, DLQ_TOPIC)}))


def test_regressions_name_every_backwards_offset() -> None:
    seen = Offsets({0: 10, 1: 5}, {0: 8, 1: 5})
    assert regressions(seen, Offsets({0: 12, 1: 5}, {0: 12, 1: 5}), "t", "g") == []
    assert regressions(Offsets(), Offsets({0: 1}, {}), "t", "g") == []  # first sight
    assert regressions(seen, Offsets(), "t", "g") == ["topic t is gone (it had 2 partitions)"]
    assert regressions(seen, Offsets({0: 10, 1: 2}, {0: 8, 1: 2}), "t", "g") == [
        "t partition 1 ends at offset 2, it had reached 5",
        "group g committed offset on t partition 1 went back from 5 to 2"]
    assert regressions(seen, Offsets({0: 10, 1: 9}, {1: 5}), "t", "g") == [
        "group g has no committed offset on t partition 0 any more (it had committed 8)"]
    assert regressions(seen, Offsets({0: 10}, {0: 8}), "t", "g")[0] == "t partition 1 is gone"


@pytest.mark.integration
def test_broker_restart_is_detected_and_refused(broker, redis_url, tmp_path: Path) -> None:
    _topics(broker.bootstrap)
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_BROKER_CHECK_INTERVAL_S="1")
    lines = feed(subscribers=20, days=20)
    try:
        worker.start()
        produce(broker.bootstrap, lines, 2)
        worker.wait_caught_up()
        key = Keys().broker_offsets(worker.app_id)
        client = redis.Redis.from_url(redis_url)
        worker.wait_for(lambda: len(client.hgetall(key)) == 4, what="offsets remembered")

        broker.restart()  # memory-only: every topic and committed offset is gone
        assert worker.proc is not None
        assert worker.proc.wait(timeout=90) == EXIT_CODE
        log = worker.log_path.read_text()
        assert any("the broker lost data" in line for line in error_lines(log)), log[-3000:]

        _topics(broker.bootstrap)
        produce(broker.bootstrap, lines[:50], 2)  # new data on the reset broker
        refused = worker.cli("worker")
        assert refused.returncode == EXIT_CODE
        assert b"lost data" in refused.stderr + refused.stdout
        assert client.hgetall(key)  # still remembered: every start refuses

        accepted = worker.cli("broker", "accept-reset")
        assert accepted.returncode == 0, accepted.stderr.decode()
        worker.start()
        worker.wait_caught_up()
        assert worker.proc.poll() is None
    finally:
        worker.stop()
