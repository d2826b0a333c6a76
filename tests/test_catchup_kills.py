"""Kill loop during a catch-up: a backlog of months of event time, produced before the worker
starts (as after an outage), by a third-party producer (confluent-kafka, one event per
message, lz4) or packed by ``churnwatch replay`` (500 events a message), is consumed at full speed while the worker is SIGKILLed again and again, each
time after a random amount of progress. Batches are applied far ahead of what a restarted
consumer re-reads, so the re-read records are replays: they must be skipped as such (never
re-applied, never re-scored, never dead-lettered as late), and nothing may be lost.

The whole history must equal the oracle: features (every valid event applied exactly once),
alert ids, every action queued once, and churn.dlq holding exactly the invalid and the
genuinely late records. ``CATCHUP_SUBSCRIBERS`` (default 120), ``CATCHUP_DAYS`` (default
120) and ``CATCHUP_KILLS`` (default 4) size it; the full run (RELIABILITY.md) is
``CATCHUP_SUBSCRIBERS=1900 CATCHUP_DAYS=150 CATCHUP_KILLS=8``, about 550,000 events.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import PARTITIONS, group_of, produce, wait_serving
from tests.support.history import check_history, oracle
from tests.support.producers import produce_events
from tests.support.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
SUBSCRIBERS = int(os.environ.get("CATCHUP_SUBSCRIBERS", "120"))
DAYS = int(os.environ.get("CATCHUP_DAYS", "120"))
KILLS = int(os.environ.get("CATCHUP_KILLS", "4"))


def applied_events(worker: Worker) -> int:
    """Events the running worker process has applied so far (its own counter)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics",
                                  timeout=5).read().decode()
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "churnwatch_events_total" and s.labels["outcome"] == "applied"))


@pytest.mark.parametrize("producer", ["confluent-lz4-single", "replay-packed"])
def test_kills_during_a_catch_up_lose_and_repeat_nothing(producer: str, broker, redis_url,
                                                        tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    sim = Simulation(SimConfig(subscribers=SUBSCRIBERS, days=DAYS, churn_rate=0.3, seed=11,
                               duplicate_rate=0.01, out_of_order_rate=0.01, invalid_rate=0.002))
    lines = [orjson.dumps(e) for e in sim.events()]
    expected = oracle(lines)
    assert expected.invalid and len(expected.alert_ids) >= 5
    if producer == "replay-packed":  # as `churnwatch replay` sends: 500 events a message
        produce(broker.bootstrap, lines, PARTITIONS, per_message=500)
    else:
        produce_events(broker.bootstrap, EVENTS_TOPIC, lines, compression="lz4")
    [worker] = group_of(1, broker, redis_url, tmp_path)
    worker.env["CHURNWATCH_BATCH_MAX"] = "500"
    # the oracle decides the rules alone: at the full size the learner reaches its label
    # guard and publishes versions at wall-clock moments, so which events the model scores
    # high (its alerts) depends on when; replays are never re-scored whatever the model
    worker.env["CHURNWATCH_MODEL_LEARNER"] = "false"
    rng = random.Random(KILLS * 7919 + SUBSCRIBERS)
    kills = 0
    try:
        for _ in range(KILLS):
            worker.start()
            wait_serving(worker)
            target = rng.randint(len(lines) // (4 * KILLS), len(lines) // (2 * KILLS))
            deadline = time.monotonic() + 120
            while applied_events(worker) < target:
                assert worker.proc is not None and worker.proc.poll() is None, \
                    worker.log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.02)
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()
            kills += 1
        worker.start()
        worker.wait_caught_up(timeout=300)
    finally:
        worker.stop()
    history = check_history(broker.bootstrap, redis_url, worker.app_id, expected)
    assert kills == KILLS
    assert history.lost == 0 and history.duplicated_actions == 0
    assert history.extra["late_after_replay"] == 0  # replays are never dead-lettered as late
