"""SIGTERM under load: the worker finishes its batch and stops cleanly (exit 0, no traceback);
after a restart no alert is published or delivered twice, and nothing is lost."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import PARTITIONS, feed, group_of, produce, wait_serving
from tests.support.history import (
    WEBHOOK_SECRET,
    HookReceiver,
    check_history,
    error_lines,
    oracle,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
TERMS = 3


def test_sigterm_during_load_stops_cleanly_and_repeats_nothing(broker, redis_url,
                                                               tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = feed(subscribers=60, days=45, seed=5)
    expected = oracle(lines)
    receiver = HookReceiver()
    [worker] = group_of(1, broker, redis_url, tmp_path, CHURNWATCH_WEBHOOK_URL=receiver.url,
                        CHURNWATCH_WEBHOOK_SECRET=WEBHOOK_SECRET)
    rng = random.Random(3)
    try:
        worker.start()
        wait_serving(worker)
        feeder = threading.Thread(target=produce, args=(broker.bootstrap, lines, PARTITIONS, 5))
        feeder.start()
        for _ in range(TERMS):
            time.sleep(rng.uniform(1.0, 3.0))
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.proc.wait(timeout=60) == 0, worker.log_path.read_text()[-3000:]
            worker.start()
            wait_serving(worker)
        feeder.join()
        worker.wait_caught_up(timeout=180)
    finally:
        worker.stop()
        receiver.close()
    log = worker.log_path.read_text()
    assert "Traceback" not in log and not error_lines(log), log[-3000:]
    history = check_history(broker.bootstrap, redis_url, worker.app_id, expected, receiver)
    assert history.alert_messages == history.alerts  # not even a redelivery on churn.alerts
    assert history.webhook_deliveries == history.alerts  # nor a second webhook delivery
