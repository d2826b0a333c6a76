"""A fleet of workers in one consumer group on a 12-partition topic over the 3-master Redis
Cluster: two workers start, a third joins during the load (rebalance), one is SIGKILLed
mid-stream. No alert is lost or invented against the offline oracle, no action is queued
twice, the features equal the oracle's and the group's lag returns to zero. Then one worker
takes over every partition, including the killed worker's, and sweeps their silence indexes.

Size: the shared 40-subscriber feed by default (the CI variant); a heavier run with
``FLEET_TEST_SUBSCRIBERS=400 pytest -m fleet``."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_members, worker_lag
from churnwatch.infra.kafka.produce import EventProducer, partition_for
from churnwatch.infra.kafka.topics import create_topics
from tests.support.compare import assert_features_equal
from tests.support.feeds import SimulatedFeed, make_feed
from tests.support.redis_target import RedisTarget
from tests.support.worker import Worker, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.fleet]
PARTITIONS = 12
SUBSCRIBERS = int(os.environ.get("FLEET_TEST_SUBSCRIBERS", "0"))


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def _feed_steadily(bootstrap: str, lines: list[bytes], gate: threading.Event,
                         slices: int = 30, pause_s: float = 0.25) -> None:
    """Produce ``lines`` in ``slices`` slices, one every ``pause_s``; before the last third,
    wait for ``gate``."""
    size = -(-len(lines) // slices)
    async with EventProducer(bootstrap, EVENTS_TOPIC, PARTITIONS, 5) as producer:
        for k in range(slices):
            if k == 2 * slices // 3:
                await asyncio.to_thread(gate.wait, 180)
            await producer.send_lines(lines[k * size:(k + 1) * size], lambda _: None)
            await asyncio.sleep(pause_s)


async def _tick_every_partition(bootstrap: str, lines: list[bytes], days: int) -> None:
    """One login per partition, from a new subscriber, ``days`` after the feed's last event."""
    end = max(e["ts"] for e in map(orjson.loads, lines) if isinstance(e.get("ts"), int))
    ticks: dict[int, dict] = {}
    k = 0
    while len(ticks) < PARTITIONS:
        sid = f"+44799900{k:04d}"
        ticks.setdefault(partition_for(sid, PARTITIONS), {
            "event_id": f"tick-{k}", "subscriber_id": sid, "type": "login",
            "ts": end + days * 86_400_000, "channel": "app"})
        k += 1
    async with EventProducer(bootstrap, EVENTS_TOPIC, PARTITIONS, 1) as producer:
        await producer.send_lines([orjson.dumps(t) for t in ticks.values()], lambda _: None)


def _applied(w: Worker) -> float:
    return sum(w.metric("churnwatch_events_total", type=t, outcome="applied") or 0
               for t in ("login", "spend", "usage", "complaint", "plan_change", "profile",
                         "churn", "active"))


def _due(client, keys: Keys) -> int:  # type: ignore[no-untyped-def]
    """Subscribers due for a silence check at their partition's watermark, all partitions."""
    total = 0
    for p in range(PARTITIONS):
        watermark = client.zscore(keys.watermarks(), str(p))
        if watermark is not None:
            total += client.zcount(keys.silence_due(p), "-inf", watermark)
    return total


def test_fleet_with_rebalance_and_a_killed_worker(broker, redis_cluster_server,
                                                  simulated_feed: SimulatedFeed,
                                                  tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    redis_cluster_server.flushall()
    target = RedisTarget(redis_cluster_server.url, cluster=True)
    feed = (make_feed(SUBSCRIBERS, 120, 0.2, seed=31, faults=0.01) if SUBSCRIBERS
            else simulated_feed)
    group = f"fleet-{uuid.uuid4().hex[:8]}"

    def worker(name: str, **env: str) -> Worker:
        (tmp_path / name).mkdir()
        w = Worker(broker, target, tmp_path / name, partitions=PARTITIONS,
                   CHURNWATCH_WORK_QUEUES="true", CHURNWATCH_BATCH_MAX="10", **env)
        w.app_id = w.env["CHURNWATCH_APP_ID"] = group
        return w

    quiet = {"CHURNWATCH_SILENCE_INTERVAL_S": "3600"}  # phase 1: the oracle has no silence
    a, b, c = worker("a", **quiet), worker("b", **quiet), worker("c", **quiet)
    sweeper = worker("sweeper", CHURNWATCH_SILENCE_INTERVAL_S="1")
    fleet = [a, b, c, sweeper]

    gate = threading.Event()
    feeder = threading.Thread(target=lambda: asyncio.run(
        _feed_steadily(broker.bootstrap, feed.lines, gate)), daemon=True)
    try:
        a.start(), b.start()
        feeder.start()
        _wait(lambda: _applied(a) > 0 and _applied(b) > 0, 120, "a and b to process events")
        c.start()  # joins while the feed streams in: a rebalance under load
        _wait(lambda: asyncio.run(group_members(broker.bootstrap, group)) == 3, 120,
              "c to join the group")
        gate.set()  # the last third of the feed
        time.sleep(1.0)
        assert a.proc is not None and a.proc.poll() is None and feeder.is_alive()
        a.proc.send_signal(signal.SIGKILL)  # mid-stream: its partitions move to b and c
        a.proc.wait()
        feeder.join(120)
        _wait(lambda: _applied(c) > 0, 120, "c to process events of its partitions")
        b.wait_caught_up(timeout=240)
        assert asyncio.run(worker_lag(broker.bootstrap, group)) == 0

        published = [orjson.loads(m) for m in asyncio.run(read_topic(broker.bootstrap,
                                                                      ALERTS_TOPIC))]
        assert {x["alert_id"] for x in published} == feed.expected_ids  # none lost/invented
        assert_features_equal(target, feed.features)

        # phase 2: three days later on every partition (the feed ends with everyone's label
        # event, so nobody is quiet yet); then one worker takes over all partitions, the
        # killed worker's too, and sweeps their silence indexes
        asyncio.run(_tick_every_partition(broker.bootstrap, feed.lines, days=3))
        b.wait_caught_up(timeout=120)
        client, keys = target.sync_client(), Keys()
        assert _due(client, keys) > 0
        sweeper.start()
        _wait(lambda: _applied(sweeper) == 0 and sweeper.metric(
            "churnwatch_silence_checks_total") is not None, 120, "the sweeper to start")
        b.stop(), c.stop()
        _wait(lambda: _due(client, keys) == 0, 180, "every partition's silence index swept")
        assert (sweeper.metric("churnwatch_silence_checks_total") or 0) > 0

        queued = []
        for key in client.scan_iter(match="cw:queue:*"):
            queued += [(e[1][b"alert_id"], e[1][b"action_id"]) for e in client.xrange(key)]
        assert len(queued) == len(set(queued)) > 0  # every action queued exactly once
        client.close()
    finally:
        for w in fleet:
            w.stop()
