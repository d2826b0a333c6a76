"""Onboarding's label burst through a real worker: a BSS snapshot per subscriber, then every
subscriber's label 31–60 days later (``benchmarks/label_feed.py``), all written at once by a
standard producer (one event per message, lz4). The worker is SIGKILLed while its learner works
through the burst and started again; the labels are then sent a second time (a producer's
retry). Every label joins its snapshot and is learned exactly once: the published version
counts each subscriber's label once, and the worker scores with it.

``LABEL_BURST_SUBSCRIBERS`` sizes it (default 50,000: the issue's onboarding burst).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from benchmarks.label_feed import label_burst
from churnwatch.core.units import DAY_MS
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.producers import produce_events
from tests.support.stream_feed import NOW
from tests.support.worker import Worker

pytestmark = pytest.mark.integration
SUBSCRIBERS = int(os.environ.get("LABEL_BURST_SUBSCRIBERS", "50000"))


def test_a_burst_of_labels_is_learned_once_across_a_crash(broker, redis_url,
                                                         tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 4 for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    feed = label_burst(SUBSCRIBERS, NOW - 120 * DAY_MS)
    profiles, labels, churners = feed.profiles, feed.labels, feed.churners
    worker = Worker(broker, redis_url, tmp_path, partitions=4,
                    CHURNWATCH_MODEL_PUBLISH_INTERVAL_S="1")

    def learned() -> int:
        return int(sum(worker.metric("churnwatch_model_labels_total", label=kind) or 0
                       for kind in ("churn", "active")))

    def newest() -> dict:
        out = worker.cli("model", "list", "--json")
        assert out.returncode == 0, out.stderr.decode()
        found = orjson.loads(out.stdout)["versions"]
        return found[-1] if found else {}

    try:
        produce_events(broker.bootstrap, EVENTS_TOPIC, profiles, compression="lz4")
        produce_events(broker.bootstrap, EVENTS_TOPIC, labels, compression="lz4")
        worker.start()
        worker.wait_for(lambda: learned() > 0, timeout=180, what="the learner at work")
        assert worker.proc is not None
        worker.proc.kill()  # mid-burst, or just after: what it learned since its last version
        worker.proc.wait()  # is learned again from that version's stream position, once
        worker.start()
        worker.wait_caught_up(timeout=180)
        worker.wait_for(lambda: newest().get("positives", 0) + newest().get("negatives", 0)
                        >= SUBSCRIBERS, timeout=180, what="a version with every label")
        produce_events(broker.bootstrap, EVENTS_TOPIC, labels, compression="lz4")  # a retry
        worker.wait_caught_up(timeout=180)
        last = newest()
        assert (last["positives"], last["negatives"]) == (churners, SUBSCRIBERS - churners)
        worker.wait_for(lambda: worker.metric("churnwatch_model_info",
                                              version=last["version"]) == 1,
                        timeout=60, what="the worker scoring with the version")
        assert (worker.metric("churnwatch_events_total", type="churn", outcome="duplicate")
                or 0) + (worker.metric("churnwatch_events_total", type="active",
                                       outcome="duplicate") or 0) >= SUBSCRIBERS
    finally:
        worker.stop()
    assert newest() == last  # the retry taught nothing: no new version
