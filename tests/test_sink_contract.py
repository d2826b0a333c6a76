"""Every alert sink keeps one contract (alerting/sinks/base.py), and the publisher hands each
batch's alerts to every enabled sink, counting their actions by sink and outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from alerting.alert import Action, Alert, to_json
from alerting.feed import AlertFeed
from alerting.sinks import AlertSink, SinkReport
from alerting.sinks.jsonl import JsonlSink
from alerting.webhook import WebhookSink
from alerting.workqueue import TeamQueues
from streams.publisher import TopicSink

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _alert(n: int, teams: tuple[str, ...]) -> Alert:
    return Alert(alert_id=f"a{n}", subscriber_id=f"+4477009000{n:02d}", ts=1_767_225_600_000 + n,
                 event_id=f"e{n}", severity="high", score=0.7, segment="regular",
                 rules=["seed_high_risk"], reasons=[], detected_at=1_767_225_600_000 + n,
                 actions=[Action(id=f"act-{t}", team=t, deadline_hours=24) for t in teams],
                 model_version="m", ruleset_version="r")


def test_every_sink_class_keeps_the_contract(redis_url: str, tmp_path: Path) -> None:
    client = aioredis.Redis.from_url(redis_url)
    sinks = [JsonlSink(tmp_path / "a.jsonl"), AlertFeed(client), TeamQueues(client),
             WebhookSink("http://127.0.0.1:9/hook", SECRET), TopicSink(publisher=None)]  # type: ignore[arg-type]
    for sink in sinks:
        assert isinstance(sink, AlertSink), type(sink).__name__
        assert isinstance(sink.name, str) and isinstance(sink.waits_out_redis, bool)
    assert len({s.name for s in sinks}) == len(sinks)
    asyncio.run(client.aclose())


def test_jsonl_feed_and_queues_hold_the_alerts_when_write_returns(redis_url: str,
                                                                   tmp_path: Path) -> None:
    alerts = [_alert(1, ("care",)), _alert(2, ("sales", "care"))]
    payloads = [to_json(a) for a in alerts]

    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        try:
            jsonl = JsonlSink(tmp_path / "alerts.jsonl")
            assert await jsonl.write(alerts, payloads) == SinkReport(sent=3)
            lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
            assert [orjson.loads(x)["alert_id"] for x in lines] == ["a1", "a2"]

            feed = AlertFeed(client)
            assert await feed.write(alerts, payloads) == SinkReport()  # shows, delivers nothing
            assert [a["alert_id"] for a in await feed.latest()] == ["a2", "a1"]

            queues = TeamQueues(client)
            assert await queues.write(alerts, payloads) == SinkReport(sent=3)
            # a replayed batch: every action is held already
            assert await queues.write(alerts, payloads) == SinkReport(duplicate=3)
        finally:
            await client.aclose()

    asyncio.run(main())
