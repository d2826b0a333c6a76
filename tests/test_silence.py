"""The silence sweep: a subscriber who goes quiet is re-scored at the partition's event-time
watermark and still trips the login-drop rule, without sending anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnwatch.infra.kafka.produce import partition_for
from tests.support.feeds import DAY
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def _same_partition(sub: str, partitions: int, *exclude: str) -> str:
    target = partition_for(sub, partitions)
    for n in range(1, 1000):
        other = f"+4477009{n:05d}"
        if other not in (sub, *exclude) and partition_for(other, partitions) == target:
            return other
    raise AssertionError("no subscriber in the same partition")


def test_quiet_subscriber_is_caught_by_the_sweep(broker, redis_url, tmp_path: Path) -> None:
    import asyncio

    from churnwatch.infra.config import (
        ALERTS_TOPIC,
        DLQ_TOPIC,
        EVENTS_TOPIC,
        SCORES_TOPIC,
    )
    from churnwatch.infra.kafka.topics import create_topics

    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_SILENCE_INTERVAL_S="0.5")
    quiet = "+447700900041"
    active = _same_partition(quiet, worker.partitions)
    feed = Feed()
    for k in range(20):  # steady logins from 30 to 11 days before NOW, then nothing
        feed.add(quiet, "login", NOW - 30 * DAY + k * DAY)
    for k in range(2):
        feed.add(quiet, "complaint", NOW - 10 * DAY + k * 3600_000, category="network")
    left = _same_partition(quiet, worker.partitions, active)
    for k in range(20):  # the same pattern, but this one churned: it has left, no checks
        feed.add(left, "login", NOW - 30 * DAY + k * DAY)
    for k in range(2):
        feed.add(left, "complaint", NOW - 10 * DAY + k * 3600_000, category="network")
    feed.add(left, "churn", NOW - 10 * DAY + 3 * 3600_000, reason="port-out")
    for d in range(31):  # another subscriber of the partition keeps the watermark moving
        feed.add(active, "login", NOW - 30 * DAY + d * DAY)
    try:
        worker.start()
        out = worker.cli("replay", str(feed.write(tmp_path / "events.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: any(a["subscriber_id"] == quiet for a in worker.alerts()),
                        timeout=30, what="a silence alert")
        assert worker.metric("churnwatch_silence_checks_total") == 1
        later = Feed()  # two more days of the active subscriber: the quiet one is due again
        for d in (1, 2):
            later.add(active, "login", NOW + d * DAY)
        out = worker.cli("replay", str(later.write(tmp_path / "later.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_for(lambda: (worker.metric("churnwatch_silence_checks_total") or 0) >= 2,
                        timeout=30, what="a second check of the quiet subscriber")
    finally:
        worker.stop()
    alerts = worker.alerts()
    # once: cooldown holds on re-sweeps; the churned subscriber is never swept
    assert [a["subscriber_id"] for a in alerts] == [quiet]
    alert = alerts[0]
    assert alert["event_id"] == f"silence-{NOW // DAY}" and alert["ts"] == NOW
    assert alert["rules"] == ["seed_high_risk"]
    fired = {r["indicator"]: r["values"] for r in alert["reasons"] if r["kind"] == "indicator"}
    assert fired["login_drop"] == {"logins_7d": 0.0, "logins_prev28": 20.0}
    assert fired["complaints"] == {"complaints_30d": 2.0}
