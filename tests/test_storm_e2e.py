"""Storm protection through a real worker: past the hourly budget actions are held, one storm
alert is raised, and `churnwatch storm release` delivers the held actions."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.support.stream_feed import Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def test_storm_holds_then_releases(broker, redis_url, tmp_path: Path) -> None:
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
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_STORM_MAX_ALERTS_PER_HOUR="2")
    feed = Feed()
    subs = [f"+4477009000{n}" for n in range(81, 85)]
    for sub in subs:  # four subscribers meet the 2-of-3 rule within the same hour
        feed.logins(sub, 20, 1)
        feed.complaints(sub, 2)
    try:
        worker.start()
        assert worker.cli("replay", str(feed.write(tmp_path / "a.ndjson"))).returncode == 0
        worker.wait_caught_up()
        worker.wait_for(lambda: len(worker.alerts()) == 5, timeout=20, what="5 alerts")
        alerts = worker.alerts()
        storm = [a for a in alerts if a["subscriber_id"] == "*"]
        held = [a for a in alerts if a["subscriber_id"] != "*" and not a["actions"]]
        assert len(storm) == 1 and storm[0]["actions"][0]["team"] == "retention-ops"
        assert len(held) == 2 and all(s["reason"] == "storm hold"
                                      for a in held for s in a["suppressed"])
        listed = worker.cli("storm", "list", "--json")
        assert orjson.loads(listed.stdout) == {"seed_high_risk": 2}

        assert worker.cli("storm", "release", "seed_high_risk").returncode == 0
        worker.wait_for(lambda: len(worker.alerts()) == 7, timeout=20, what="released alerts")
    finally:
        worker.stop()
    released = worker.alerts()[5:]
    assert {a["event_id"] for a in released} == {a["event_id"] for a in held}
    assert {a["alert_id"] for a in released}.isdisjoint({a["alert_id"] for a in held})
    assert all(a["actions"] and a["reasons"][-1] == {"kind": "storm_release"} for a in released)
    assert orjson.loads(worker.cli("storm", "list", "--json").stdout) == {}
