"""Where a batch's outputs go: the churn.* topics and every configured alert sink.

``alerts`` returns only when every enabled sink has the alerts (Kafka acks=all, JSONL fsync,
team work queues written, webhook delivered or dead-lettered), so the pipeline can mark them
delivered afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
import msgspec
from tenacity import AsyncRetrying

from alerting.alert import Alert, to_json
from alerting.feed import AlertFeed
from alerting.sinks import AlertSink, SinkReport, actions_of
from alerting.sinks.jsonl import JsonlSink
from alerting.webhook import WebhookSink
from alerting.workqueue import TeamQueues
from churnwatch.infra.config import Settings
from churnwatch.infra.kafka.topics import TopicNames
from churnwatch.infra.runtime.metrics import Metrics
from streams.records import DeadLetter
from streams.repartition import Forward
from streams.retrying import redis_retries

# the Redis error counter's label of the sinks that wait out an outage
_OPERATION = {"feed": "alerts_feed", "work_queue": "work_queue"}


class TopicSink:
    """The ``churn.alerts`` topic, through the Faust app's producer (acks=all), keyed by
    subscriber (an :class:`~alerting.sinks.AlertSink`)."""

    name = "kafka"
    waits_out_redis = False

    def __init__(self, publisher: KafkaPublisher) -> None:
        self.publisher = publisher

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        await self.publisher.send(self.publisher.topics.alerts,
                                  [(a.subscriber_id.encode(), p) for a, p in zip(alerts, payloads)])
        return SinkReport(sent=actions_of(alerts))


class KafkaPublisher:
    """Publishes to Kafka through the Faust app's producer, waiting for acknowledgements."""

    def __init__(self, app: faust.App, settings: Settings, redis: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.topics = TopicNames.of(settings)
        self.scores_jsonl = JsonlSink(settings.scores_jsonl) if settings.scores_jsonl else None
        self.publish_scores = settings.publish_scores
        self.wants_scores = bool(self.scores_jsonl or self.publish_scores)
        self.feed = AlertFeed(redis, maxlen=settings.web_feed_maxlen)
        # every alert goes to each of these, concurrently (alerting/sinks/base.py: the contract)
        self.sinks: list[AlertSink] = [TopicSink(self)]
        if settings.alerts_jsonl:
            self.sinks.append(JsonlSink(settings.alerts_jsonl))
        self.sinks.append(self.feed)
        if settings.work_queues:
            self.sinks.append(TeamQueues(redis, maxlen=settings.work_queue_maxlen))
        if settings.webhook_url:
            self.sinks.append(WebhookSink(
                settings.webhook_url, settings.webhook_secret.get_secret_value(),
                timeout_s=settings.webhook_timeout_s, max_attempts=settings.webhook_max_attempts,
                on_dead_letter=self._webhook_dead_letter, metrics=metrics))

    async def send(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = self.app.producer
        futures = [await producer.send(topic, key, value, None, None, None)
                   for key, value in messages]
        await asyncio.gather(*futures)

    async def dead_letters(self, payloads: list[bytes]) -> None:
        await self.send(self.topics.dlq, [(None, p) for p in payloads])

    async def forward(self, topic: str, messages: list[Forward]) -> dict[int, int]:
        """Publish ``messages``; returns, per partition, the offset after the last one."""
        producer = self.app.producer
        futures = [await producer.send(topic, None, m.value, m.partition, None, m.headers)
                   for m in messages]
        ends: dict[int, int] = {}
        for meta in await asyncio.gather(*futures):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        """Hand the alerts to every sink, all at once; returns once each holds them durably
        (raises the first sink's error once every sink is done: a replay re-sends them, and
        sinks are idempotent per alert). One round trip of waiting, not one per sink: a
        delivery waits behind the next batch's processing at each of its awaits."""
        reports = await asyncio.gather(*(self._write(sink, alerts, payloads)
                                         for sink in self.sinks), return_exceptions=True)
        failed = [r for r in reports if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _write(self, sink: AlertSink, alerts: list[Alert], payloads: list[bytes]
                     ) -> SinkReport:
        if not sink.waits_out_redis:
            report = await sink.write(alerts, payloads)
        else:
            async for attempt in self._retrying(_OPERATION.get(sink.name, sink.name)):
                with attempt:
                    report = await sink.write(alerts, payloads)
        for outcome, n in report.counts().items():
            self.metrics.actions.labels(sink.name, outcome).inc(n)
        return report

    def _retrying(self, operation: str) -> AsyncRetrying:
        """Retry a sink's Redis writes until Redis is back (the batch waits), counting errors."""
        return redis_retries(self.metrics, operation)

    async def _webhook_dead_letter(self, alert: Alert, reason: str) -> None:
        letter = DeadLetter(f"webhook: {reason}", "webhook", self.topics.alerts, -1, -1, -1,
                            to_json(alert).decode())
        await self.dead_letters([msgspec.json.encode(letter)])
        self.metrics.dead_letters.labels("webhook").inc()

    async def scores(self, payloads: list[bytes]) -> None:
        if self.publish_scores:
            await self.send(self.topics.scores, [(None, p) for p in payloads])
        if self.scores_jsonl:
            self.scores_jsonl.append(payloads)

