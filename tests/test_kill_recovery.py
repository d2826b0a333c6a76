"""SIGKILL the worker again and again mid-stream: no alert is lost, no action is queued twice,
and the features in Redis equal a clean recomputation (at-least-once delivery + idempotent
effects, DESIGN.md §6)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from alerting.alert import alert_id
from churnwatch.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.embedded import create_topics
from churnwatch.events import decode_payload
from churnwatch.offsets import group_lag
from churnwatch.simulate import SimConfig, Simulation
from features.reference import ReferenceStore
from features.store import FeatureStore
from rules.dryrun import dry_run
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset
from tests.conftest import Worker, read_topic

pytestmark = pytest.mark.integration
KILLS = 4


def test_sigkill_mid_stream_loses_and_duplicates_nothing(broker, redis_url, tmp_path: Path):
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    sim = Simulation(SimConfig(subscribers=150, days=150, churn_rate=0.15, seed=11,
                               duplicate_rate=0.01, out_of_order_rate=0.01))
    path = tmp_path / "events.ndjson"
    lines = [orjson.dumps(e) for e in sim.events()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = dry_run(compile_ruleset(load_ruleset()), lines)["alerts"]
    expected_ids = {alert_id(a["subscriber_id"], a["event_id"], a["rules"]) for a in expected}
    assert len(expected_ids) >= 10

    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_SILENCE_INTERVAL_S="3600",
                    CHURNWATCH_WORK_QUEUES="true", CHURNWATCH_BATCH_MAX="20")
    rng = random.Random(5)
    try:
        worker.start()
        out = worker.cli("replay", str(path), "--per-message", "50")
        assert out.returncode == 0, out.stderr.decode()
        for _ in range(KILLS):
            time.sleep(rng.uniform(3.0, 6.0))  # startup takes ~3 s: kills land mid-stream
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()
            worker.start()
        worker.wait_caught_up(timeout=180)
    finally:
        worker.stop()
    assert asyncio.run(group_lag(broker.bootstrap, worker.app_id, EVENTS_TOPIC)) == 0

    published = [orjson.loads(m) for m in asyncio.run(read_topic(broker.bootstrap,
                                                                  ALERTS_TOPIC))]
    assert {a["alert_id"] for a in published} == expected_ids  # none lost, none invented

    client = redis.Redis.from_url(redis_url)
    queued = []
    for key in client.scan_iter("cw:queue:*"):
        queued += [(e[1][b"alert_id"], e[1][b"action_id"]) for e in client.xrange(key)]
    assert len(queued) == len(set(queued))  # every action queued exactly once
    assert {aid.decode() for aid, _ in queued} <= expected_ids

    reference = ReferenceStore()
    for raw in lines:
        for ev in decode_payload(raw)[0]:
            reference.apply(ev)
    ids = sorted(reference.subscribers)
    stored = asyncio.run(_read_features(redis_url, ids))
    assert sorted(stored) == ids
    for sid in ids:
        assert np.array_equal(stored[sid], reference.features(sid), equal_nan=True), sid


async def _read_features(redis_url: str, ids: list[str]) -> dict[str, np.ndarray]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return {sid: row for sid, (row, _) in (await FeatureStore(client).read(ids)).items()}
    finally:
        await client.aclose()
