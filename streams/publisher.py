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
from alerting.sinks import JsonlSink
from alerting.webhook import WebhookSink
from alerting.workqueue import TeamQueues
from churnwatch.infra.config import Settings
from churnwatch.infra.kafka.topics import TopicNames
from churnwatch.infra.runtime.metrics import Metrics
from streams.records import DeadLetter
from streams.repartition import Forward
from streams.retrying import redis_retries


class KafkaPublisher:
    """Publishes to Kafka through the Faust app's producer, waiting for acknowledgements."""

    def __init__(self, app: faust.App, settings: Settings, redis: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.topics = TopicNames.of(settings)
        self.alerts_jsonl = JsonlSink(settings.alerts_jsonl) if settings.alerts_jsonl else None
        self.scores_jsonl = JsonlSink(settings.scores_jsonl) if settings.scores_jsonl else None
        self.publish_scores = settings.publish_scores
        self.wants_scores = bool(self.scores_jsonl or self.publish_scores)
        self.feed = AlertFeed(redis, maxlen=settings.web_feed_maxlen)
        self.queues = (TeamQueues(redis, maxlen=settings.work_queue_maxlen)
                       if settings.work_queues else None)
        self.webhook = (WebhookSink(settings.webhook_url, settings.webhook_secret.get_secret_value(),
                                    timeout_s=settings.webhook_timeout_s,
                                    max_attempts=settings.webhook_max_attempts,
                                    on_dead_letter=self._webhook_dead_letter)
                        if settings.webhook_url else None)
        self._webhook_lost_actions = 0  # actions of alerts the current webhook send gave up on

    async def _send(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = self.app.producer
        futures = [await producer.send(topic, key, value, None, None, None)
                   for key, value in messages]
        await asyncio.gather(*futures)

    async def dead_letters(self, payloads: list[bytes]) -> None:
        await self._send(self.topics.dlq, [(None, p) for p in payloads])

    async def forward(self, topic: str, messages: list[Forward]) -> None:
        producer = self.app.producer
        futures = [await producer.send(topic, None, m.value, m.partition, None, m.headers)
                   for m in messages]
        await asyncio.gather(*futures)

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        actions = self.metrics.actions
        n_actions = sum(len(a.actions) for a in alerts)
        await self._send(self.topics.alerts, [(a.subscriber_id.encode(), p)
                                        for a, p in zip(alerts, payloads)])
        actions.labels("kafka", "sent").inc(n_actions)
        if self.alerts_jsonl:
            self.alerts_jsonl.write(payloads)
            actions.labels("jsonl", "sent").inc(n_actions)
        async for attempt in self._retrying("alerts_feed"):
            with attempt:
                await self.feed.add(payloads)
        if self.queues:
            async for attempt in self._retrying("work_queue"):
                with attempt:
                    added = await self.queues.send(alerts, payloads)
            actions.labels("work_queue", "sent").inc(added)
            actions.labels("work_queue", "duplicate").inc(n_actions - added)
        if self.webhook:
            self._webhook_lost_actions = 0
            report = await self.webhook.send(alerts, payloads)
            lost = self._webhook_lost_actions
            self.metrics.webhook_deliveries.labels("delivered").inc(report.delivered)
            self.metrics.webhook_deliveries.labels("dead_letter").inc(report.dead_lettered)
            self.metrics.webhook_retries.inc(report.retries)
            actions.labels("webhook", "sent").inc(n_actions - lost)
            actions.labels("webhook", "dead_letter").inc(lost)

    def _retrying(self, operation: str) -> AsyncRetrying:
        """Retry a sink's Redis writes until Redis is back (the batch waits), counting errors."""
        return redis_retries(self.metrics, operation)

    async def _webhook_dead_letter(self, alert: Alert, reason: str) -> None:
        letter = DeadLetter(f"webhook: {reason}", "webhook", self.topics.alerts, -1, -1, -1,
                            to_json(alert).decode())
        await self.dead_letters([msgspec.json.encode(letter)])
        self.metrics.dead_letters.labels("webhook").inc()
        self._webhook_lost_actions += len(alert.actions)

    async def scores(self, payloads: list[bytes]) -> None:
        if self.publish_scores:
            await self._send(self.topics.scores, [(None, p) for p in payloads])
        if self.scores_jsonl:
            self.scores_jsonl.write(payloads)

