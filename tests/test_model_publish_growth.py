"""The learner publishes early when it has learned a large share more than its last version
(``model_publish_growth``), not only every ``model_publish_interval_s``: a model learning
fast (go-live, a backlog) reaches the scorers at once. Unit (a learner on a real Redis, its
clock stopped) and through a real worker whose publish interval never elapses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from churnwatch.infra.runtime.metrics import Metrics
from online_models.learner import Learner, example_writes
from online_models.versions import ModelVersions
from tests.support.examples import examples
from tests.support.feeds import DAY
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

K = Keys()


async def _steps(redis_url: str, growth: float, batches: list[int]) -> list[int]:
    """Labels in each published version after each step, one batch of examples per step;
    the interval never elapses (the clock stands still)."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    versions = ModelVersions(client)
    learner = Learner(client, versions, Metrics(), "a", publish_every_s=3600,
                      publish_growth=growth, clock=lambda: 1_000.0)
    out, start = [], 0
    try:
        for n in batches:
            for write in example_writes(K, examples(n, start)):
                await client.execute_command(*write.args)
            start += n
            await learner.step()
            head = await versions.head()
            rows = {r["version"]: r for r in await versions.list()}
            out.append(rows[head]["positives"] + rows[head]["negatives"] if head else 0)
    finally:
        await client.aclose()
    return out


def test_a_version_is_published_once_the_labels_grew_by_the_share(redis_url: str) -> None:
    # 40 labels after none: published; +10 (< 50 % of 40): not yet; +10 more (20 = 50 %):
    # published; +29 (< 50 % of 60): not yet
    assert asyncio.run(_steps(redis_url, 0.5, [40, 10, 10, 29])) == [40, 40, 60, 60]


def test_without_growth_only_the_interval_publishes(redis_url: str) -> None:
    assert asyncio.run(_steps(redis_url, 0.0, [40, 10, 10])) == [0, 0, 0]


@pytest.mark.integration
def test_a_worker_scores_with_what_it_learned_before_the_interval(broker, redis_url,
                                                                  tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    # the interval never elapses in the test: only the growth rule (default) can publish
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_MODEL_PUBLISH_INTERVAL_S="86400",
                    CHURNWATCH_MODEL_HISTORY_DAYS="0")
    feed = Feed()
    subs = [f"+4477009{n:05d}" for n in range(400, 430)]
    for k, sub in enumerate(subs):  # a snapshot 20 days before the label, then the label
        feed.add(sub, "login", NOW - 40 * DAY + k * 60_000, channel="app")
        feed.add(sub, "churn" if k % 3 == 0 else "active", NOW - 20 * DAY + k * 60_000)

    def versions() -> list[dict]:
        out = worker.cli("model", "list", "--json")
        assert out.returncode == 0, out.stderr.decode()
        return orjson.loads(out.stdout)["versions"]

    try:
        worker.start()
        out = worker.cli("replay", str(feed.write(tmp_path / "feed.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: any(v["positives"] + v["negatives"] == 30 for v in versions()),
                        timeout=60, what="a version with every label, before the interval")
        latest = versions()[-1]["version"]
        worker.wait_for(lambda: worker.metric("churnwatch_model_info", version=latest) == 1,
                        timeout=30, what="the worker scoring with it")
    finally:
        worker.stop()
