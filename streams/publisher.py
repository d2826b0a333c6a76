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
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from alerting.alert import Alert, to_json
from alerting.sinks import JsonlSink
from alerting.webhook import WebhookSink
from alerting.workqueue import TeamQueues
from churnwatch.config import ALERTS_TOPIC, DLQ_TOPIC, SCORES_TOPIC, Settings
from churnwatch.metrics import Metrics
from streams.pipeline import DeadLetter, is_retryable


class KafkaPublisher:
    """Publishes to Kafka through the Faust app's producer, waiting for acknowledgements."""

    def __init__(self, app: faust.App, settings: Settings, redis: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.alerts_jsonl = JsonlSink(settings.alerts_jsonl) if settings.alerts_jsonl else None
        self.scores_jsonl = JsonlSink(settings.scores_jsonl) if settings.scores_jsonl else None
        self.publish_scores = settings.publish_scores
        self.wants_scores = bool(self.scores_jsonl or self.publish_scores)
        self.queues = (TeamQueues(redis, maxlen=settings.work_queue_maxlen)
                       if settings.work_queues else None)
        self.webhook = (WebhookSink(settings.webhook_url, settings.webhook_secret.get_secret_value(),
                                    timeout_s=settings.webhook_timeout_s,
                                    max_attempts=settings.webhook_max_attempts,
                                    on_dead_letter=self._webhook_dead_letter)
                        if settings.webhook_url else None)

    async def _send(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = self.app.producer
        futures = [await producer.send(topic, key, value, None, None, None)
                   for key, value in messages]
        await asyncio.gather(*futures)

    async def dead_letters(self, payloads: list[bytes]) -> None:
        await self._send(DLQ_TOPIC, [(None, p) for p in payloads])

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        await self._send(ALERTS_TOPIC, [(a.subscriber_id.encode(), p)
                                        for a, p in zip(alerts, payloads)])
        if self.alerts_jsonl:
            self.alerts_jsonl.write(payloads)
        if self.queues:
            async for attempt in AsyncRetrying(retry=retry_if_exception(is_retryable),
                                               reraise=True,
                                               wait=wait_exponential_jitter(initial=0.1, max=5)):
                with attempt:
                    added = await self.queues.send(alerts, payloads)
            self.metrics.queued_actions.inc(added)
        if self.webhook:
            report = await self.webhook.send(alerts, payloads)
            self.metrics.webhook_deliveries.labels("delivered").inc(report.delivered)
            self.metrics.webhook_deliveries.labels("dead_letter").inc(report.dead_lettered)
            self.metrics.webhook_retries.inc(report.retries)

    async def _webhook_dead_letter(self, alert: Alert, reason: str) -> None:
        letter = DeadLetter(f"webhook: {reason}", "webhook", ALERTS_TOPIC, -1, -1, -1,
                            to_json(alert).decode())
        await self.dead_letters([msgspec.json.encode(letter)])
        self.metrics.dead_letters.labels("webhook").inc()

    async def scores(self, payloads: list[bytes]) -> None:
        if self.publish_scores:
            await self._send(SCORES_TOPIC, [(None, p) for p in payloads])
        if self.scores_jsonl:
            self.scores_jsonl.write(payloads)
