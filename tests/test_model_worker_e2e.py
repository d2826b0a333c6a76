"""A real worker learns from delayed labels, publishes versions, scores with the active one,
and switches when an operator promotes another (`churnwatch model promote`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import redis

from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.feeds import DAY
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def test_worker_learns_publishes_and_follows_promotion(broker, redis_url, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_MODEL_PUBLISH_INTERVAL_S="0.5",
                    CHURNWATCH_MODEL_HISTORY_DAYS="0",  # snapshot from each first event
                    # the second round labels each subscriber again 20 days after its first
                    # label, within the horizon: two labels per horizon are learned
                    CHURNWATCH_MODEL_MAX_LABELS_PER_HORIZON="2")
    feed = Feed()
    subs = [f"+4477009{n:05d}" for n in range(300, 330)]
    for k, sub in enumerate(subs):  # a snapshot 20 days before the label, then the label
        feed.add(sub, "login", NOW - 40 * DAY + k * 60_000, channel="app")
        feed.add(sub, "churn" if k % 3 == 0 else "active", NOW - 20 * DAY + k * 60_000)

    def versions() -> dict:
        out = worker.cli("model", "list", "--json")
        assert out.returncode == 0, out.stderr.decode()
        return orjson.loads(out.stdout)

    try:
        worker.start()
        out = worker.cli("replay", str(feed.write(tmp_path / "first.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: (worker.metric("churnwatch_model_labels_total", label="churn")
                                 or 0) == 10, timeout=60, what="ten positive labels learned")
        assert worker.metric("churnwatch_model_labels_total", label="active") == 20
        worker.wait_for(lambda: any(v["positives"] == 10 for v in versions()["versions"]),
                        timeout=30, what="a version with every label")
        first = versions()["versions"][-1]["version"]
        worker.wait_for(lambda: worker.metric("churnwatch_model_info", version=first) == 1,
                        timeout=30, what="the worker scoring with the published version")
        second = Feed()  # more labels: a newer version becomes active
        for k, sub in enumerate(subs):
            second.add(sub, "login", NOW - 10 * DAY + k * 60_000, channel="app")
            second.add(sub, "active", NOW + k * 60_000)
        for ev in second.events:
            ev["event_id"] += "-b"
        out = worker.cli("replay", str(second.write(tmp_path / "second.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: versions()["versions"][-1]["negatives"] == 50, timeout=60,
                        what="a version with the new labels")
        newest = versions()["versions"][-1]["version"]
        assert newest != first
        worker.wait_for(lambda: worker.metric("churnwatch_model_info", version=newest) == 1,
                        timeout=30, what="the worker following the learner")
        out = worker.cli("model", "promote", first)
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_for(lambda: worker.metric("churnwatch_model_info", version=first) == 1,
                        timeout=30, what="the worker scoring with the promoted version")
        assert worker.metric("churnwatch_model_info", version=newest) is None  # series dropped
        assert versions()["pinned"] is True
        worker.stop()  # SIGTERM: it hands the learner lock over on its way out
        assert worker.proc is not None and worker.proc.returncode == 0
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.get(Keys().model("learner")) is None
        finally:
            client.close()
    finally:
        worker.stop()
