"""A fleet of three workers on 12 partitions, fed by two producers that place subscribers
differently, loses a worker to a stall and takes it back.

The feed (duplicates, invalid records, late events mixed in) is sent in slices. In each
slice every subscriber goes to one of three writers and one of two formats of its number
(``+44 7954 288876``, ``00447954288876``: one subscriber once normalised):

- confluent-kafka with librdkafka's default partitioner (CRC32 of the key), keyed by the id
  as written, one event per message;
- churnwatch's own producer (murmur2 of the normalised id, many events per message);
- confluent-kafka without keys, all of a slice's to one partition (another each slice), as
  a producer with a partitioner of its own (librdkafka's spreads unkeyed messages at random,
  which would reorder a subscriber's events within a slice).

So most subscribers' events arrive away from their home partition and are forwarded there
(``streams.repartition``). The next slice starts once the group caught up (each subscriber's
events in the feed's order, as the oracle applies them).

One worker stops itself (SIGSTOP, by failpoint) in the middle of a batch commit: staged,
ownership watched, nothing written. Its session times out, the two others take its
partitions and keep processing a slice; then it is resumed (SIGCONT): its commit must be
refused (counted as fenced, nothing written), and it rejoins the group for the last slices.
Features, alerts, work queues (each action once) and dead letters (exactly the invalid and
the late records) must equal the offline oracle's.

On a single redis-server: the write fence is a ``WATCH`` on the claims and applied offsets,
which a Redis Cluster cannot do across slots (``streams.commit``). Size: 40 subscribers by
default; ``FLEET_TEST_SUBSCRIBERS=400 pytest tests/test_fleet_stall.py`` for a heavier run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import zlib
from pathlib import Path

import pytest
import redis

from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_members
from churnwatch.infra.kafka.produce import EventProducer
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import feed, group_of, wait_serving
from tests.support.history import check_history, oracle
from tests.support.id_formats import subscriber, variant, with_late
from tests.support.producers import produce, produce_events
from tests.support.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.fleet]
PARTITIONS = 12
SUBSCRIBERS = int(os.environ.get("FLEET_TEST_SUBSCRIBERS") or 40)
SLICES = 8
FORMATS = (1, 2)  # id_formats.variant: "+44 7954 288876" and "00447954288876"


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _send_slice(bootstrap: str, lines: list[bytes], k: int) -> None:
    """Send slice ``k`` through the three writers."""
    writers: list[list[bytes]] = [[], [], []]
    for line in lines:
        h = zlib.crc32(subscriber(line).encode())
        writers[(h + k) % 3].append(variant(line, FORMATS[(h // 3 + k) % 2]))
    produce_events(bootstrap, EVENTS_TOPIC, writers[0], compression="lz4", key="raw")

    async def packed() -> None:
        async with EventProducer(bootstrap, EVENTS_TOPIC, PARTITIONS, 10) as producer:
            await producer.send_lines(writers[1])

    asyncio.run(packed())
    produce(bootstrap, EVENTS_TOPIC, writers[2], key="none", compression="zstd",
            partition=(5 * k) % PARTITIONS)


def _metric(w: Worker, name: str, **labels: str) -> float:
    value = w.metric(name, **labels)
    return value or 0.0


def _applied(w: Worker) -> float:
    return sum(_metric(w, "churnwatch_events_total", type=t, outcome="applied") for t in (
        "login", "spend", "usage", "complaint", "plan_change", "profile", "churn", "active"))


def _claimed_by(client: redis.Redis, owners: str, pid: int) -> int:
    """How many partitions (of every consumed topic) the worker ``pid`` holds a claim on."""
    return sum(1 for v in client.hvals(owners) if f":{pid}:" in v.decode())


def test_a_stalled_worker_rejoins_a_fleet_fed_by_two_partitioners(broker, redis_url,
                                                                  tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = with_late(feed(subscribers=SUBSCRIBERS, days=45, seed=12), 0.01, 10 * DAY_MS, 5)
    expected = oracle(lines)
    assert expected.late and expected.invalid and expected.alert_ids  # the feed covers them
    stalled, *others = workers = group_of(
        3, broker, redis_url, tmp_path, PARTITIONS, CHURNWATCH_SESSION_TIMEOUT_S="2")
    marker = tmp_path / "stalled"
    # the stalled worker stops at its 3rd batch commit: staged, claims watched, not written
    stalled.env["CHURNWATCH_FAILPOINT"] = f"before_redis_write:{marker}:3:stop"
    client = redis.Redis.from_url(redis_url)
    owners = Keys().partition_owners(stalled.app_id)
    size = -(-len(lines) // SLICES)
    stalled_at: int | None = None
    try:
        for w in workers:
            w.start()
        for w in workers:
            wait_serving(w)
        pids = [w.proc.pid for w in workers if w.proc is not None]
        _wait(lambda: asyncio.run(group_members(broker.bootstrap, stalled.app_id)) == 3
              and all(_claimed_by(client, owners, pid) for pid in pids), 120,
              "the three workers to share the partitions")
        for k in range(SLICES):
            _send_slice(broker.bootstrap, lines[k * size:(k + 1) * size], k)
            others[0].wait_caught_up(timeout=180)
            if stalled_at is None and marker.exists():
                # stalled past its session timeout: the others own everything and go on
                stalled_at = k
                _wait(lambda: _claimed_by(client, owners, pids[0]) == 0, 120,
                      "the others to claim the stalled worker's partitions")
            elif stalled_at is not None and k == stalled_at + 1:  # one slice without it
                os.kill(pids[0], signal.SIGCONT)
                _wait(lambda: (stalled.metric("churnwatch_fenced_batches_total") or 0) >= 1,
                      90, "the resumed worker's commit to be refused")
                before = _applied(stalled)
                _wait(lambda: _claimed_by(client, owners, pids[0]) > 0, 120,
                      "the resumed worker to rejoin the group")
        assert stalled_at is not None and stalled_at + 1 < SLICES - 1, \
            f"the stalled worker reached its 3rd commit late or never ({stalled_at})"
        assert _applied(stalled) > before  # it applied events again after it rejoined
        forwarded = sum(_metric(w, "churnwatch_forwarded_events_total") for w in workers)
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                os.kill(w.proc.pid, signal.SIGCONT)
            w.stop()
        client.close()
    assert forwarded > len(lines) / 3  # most events arrived away from home
    history = check_history(broker.bootstrap, redis_url, stalled.app_id, expected)
    assert history.lost == 0 and history.duplicated_actions == 0 and history.actions > 0
    assert history.extra["late_after_replay"] == 0  # dead letters: exactly the late events
