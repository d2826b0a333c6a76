"""Whole-history invariants for fault tests: an offline oracle over the events fed, and one
check of everything a run left behind (topics, work queues, webhook receiver, Redis, lag).

The promises checked (RELIABILITY.md): every alert the oracle raises is published and none
other; no action is queued or performed twice; the features in Redis equal a clean replay;
every partition's lag is zero; every rejected record is on churn.dlq with a reason.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import orjson
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from alerting.alert import alert_id
from alerting.dryrun import dry_run
from alerting.webhook import verify_signature
from churnwatch.core.events import decode_payload
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, home_topic
from churnwatch.infra.kafka.offsets import high_watermarks
from features.reference import ReferenceStore
from features.schema import FEATURES
from features.store import FeatureStore
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset
from tests.support.worker import read_topic

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_ERROR_LINE = re.compile(r'\[(ERROR|CRITICAL)\]|"level": ?"(error|critical)"')


def error_lines(log: str) -> list[str]:
    """Lines of a worker log at ERROR or CRITICAL level: Faust's ``[ERROR]`` format or JSON
    lines with ``"level": "error"``."""
    return [line for line in log.splitlines() if _ERROR_LINE.search(line)]


@dataclass
class Oracle:
    """What a clean, single-pass run over ``lines`` must produce."""

    lines: list[bytes]
    alert_ids: set[str]
    invalid: Counter[str]  # raw rejected records (as DLQ payload text) -> how many were fed
    late: set[str]  # event ids the oracle rejects as late
    reference: ReferenceStore
    events: int


def oracle(lines: list[bytes]) -> Oracle:
    expected = dry_run(compile_ruleset(load_ruleset()), lines)
    reference = ReferenceStore()
    invalid: Counter[str] = Counter()
    late: set[str] = set()
    events = 0
    for raw in lines:
        valid, rejected = decode_payload(raw)
        invalid.update(r.raw.decode("utf-8", "replace") for r in rejected)
        for ev in valid:
            events += 1
            if reference.apply(ev, features=False)[0] == "L":
                late.add(ev.event_id)
    ids = {alert_id(a["subscriber_id"], a["event_id"], a["rules"]) for a in expected["alerts"]}
    return Oracle(lines, ids, invalid, late, reference, events)


class HookReceiver:
    """A webhook receiver on 127.0.0.1 that verifies every signature and, like an integrator,
    performs the action once per ``webhook-id``."""

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        self.deliveries: list[str] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                body = self.rfile.read(int(self.headers["content-length"]))
                if verify_signature(secret, dict(self.headers), body):
                    receiver.deliveries.append(self.headers["webhook-id"])
                    self.send_response(204)
                else:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class History:
    """Counts of one run, after :func:`check_history` verified it."""

    events: int = 0
    alerts: int = 0
    alert_messages: int = 0  # on churn.alerts, redeliveries included
    actions: int = 0
    webhook_deliveries: int = 0
    dlq_records: int = 0
    dlq_unique: int = 0
    lost: int = 0
    duplicated_actions: int = 0
    extra: dict = field(default_factory=dict)


async def partition_lag(bootstrap: str, group: str, topic: str = EVENTS_TOPIC) -> dict[int, int]:
    """Uncommitted records of ``group`` per partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await high_watermarks(consumer, topic)
        return {tp.partition: end - (await consumer.committed(tp) or 0)
                for tp, end in ends.items()}
    finally:
        await consumer.stop()


def check_history(bootstrap: str, redis_url: str, group: str, expected: Oracle,
                  receiver: HookReceiver | None = None, work_queues: bool = True) -> History:
    """Assert every whole-history invariant; return the run's counts."""
    h = History(events=expected.events)
    for topic in (EVENTS_TOPIC, home_topic(group)):
        lags = asyncio.run(partition_lag(bootstrap, group, topic))
        assert lags and all(lag == 0 for lag in lags.values()), f"{topic} lag: {lags}"

    published = [orjson.loads(m) for m in asyncio.run(read_topic(bootstrap, ALERTS_TOPIC))]
    ids = {a["alert_id"] for a in published}
    h.alerts, h.alert_messages = len(ids), len(published)
    h.lost = len(expected.alert_ids - ids)
    assert ids == expected.alert_ids, (f"lost {sorted(expected.alert_ids - ids)[:5]}, "
                                       f"invented {sorted(ids - expected.alert_ids)[:5]}")
    by_id = {a["alert_id"]: a for a in published}

    if work_queues:
        client = redis.Redis.from_url(redis_url)
        queued = [(e[1][b"alert_id"].decode(), e[1][b"action_id"].decode())
                  for key in client.scan_iter("cw:queue:*") for e in client.xrange(key)]
        client.close()
        h.actions = len(set(queued))
        h.duplicated_actions = len(queued) - len(set(queued))
        assert h.duplicated_actions == 0, Counter(queued).most_common(3)
        want = {(aid, act["id"]) for aid, a in by_id.items() for act in a["actions"]}
        assert set(queued) == want, (f"missing {sorted(want - set(queued))[:5]}, "
                                     f"unexpected {sorted(set(queued) - want)[:5]}")
    if receiver is not None:
        h.webhook_deliveries = len(receiver.deliveries)
        assert receiver.bad_signatures == 0
        assert set(receiver.deliveries) == expected.alert_ids  # each performed once, none lost

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(bootstrap, DLQ_TOPIC))]
    h.dlq_records = len(letters)
    assert all(d["reason"] for d in letters)
    invalid = {(d["partition"], d["offset"], d["index"]): d["payload"]
               for d in letters if d["kind"] == "invalid"}
    assert Counter(invalid.values()) == expected.invalid  # each rejected record, once per feed
    late = {orjson.loads(d["payload"])["event_id"] for d in letters if d["kind"] == "late"}
    # the oracle's late events, plus re-sent events whose ids expired (replays: no-ops)
    assert expected.late <= late
    h.dlq_unique = len(invalid) + len(late)
    h.extra["late_after_replay"] = len(late - expected.late)

    ids_ = sorted(expected.reference.subscribers)
    stored = asyncio.run(_read_features(redis_url, ids_))
    assert sorted(stored) == ids_
    for sid in ids_:
        want = expected.reference.features(sid)
        assert np.array_equal(stored[sid], want, equal_nan=True), (sid, {
            name: (got, exp) for name, got, exp in zip(FEATURES, stored[sid].tolist(),
                                                       want.tolist()) if got != exp})
    return h


async def _read_features(redis_url: str, ids: list[str]) -> dict[str, np.ndarray]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return {sid: row for sid, (row, _) in (await FeatureStore(client).read(ids)).items()}
    finally:
        await client.aclose()
