"""The Kafka topics of one deployment: their names and their creation at startup.

Every name starts with ``topic_prefix`` (empty by default), so two deployments can share a
cluster: ``staging.`` gives ``staging.churn.events``, ``staging.churn.alerts``, … and the
group's internal ``staging.<app_id>.churn.events.home``. Topics are created with
``partitions`` partitions and ``topic_replication_factor`` replicas, through the same client
security settings as every other client (:func:`churnwatch.infra.kafka.auth.client_options`); with
``create_topics = false`` nothing is created and startup fails if one is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import astuple, dataclass
from typing import Any

from churnwatch.core.errors import ChurnwatchError, ConfigError
from churnwatch.infra.config import (
    ALERTS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    SCORES_TOPIC,
    Settings,
    home_topic,
)


class TopicsError(ChurnwatchError):
    """The broker refused a topic, or an existing topic has another partition count."""


async def create_topics(bootstrap: str, topics: dict[str, int], replication: int = 1, timeout: float = 10.0,
                        client_options: dict[str, Any] | None = None, create: bool = True) -> None:
    """Create ``topics`` (name -> partitions), tolerating existing ones, then verify partition counts.

    ``client_options``: the aiokafka security settings (``churnwatch.infra.kafka.auth.client_options``).
    ``create=False`` creates nothing and raises :class:`ConfigError` at once if a topic is missing
    or has another partition count."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, for_code

    if bad := {t: p for t, p in topics.items() if p < 1}:
        raise TopicsError(f"partition counts must be >= 1: {bad}")  # Tansu itself accepts 0
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                                **(client_options or {}))
    await admin.start()
    try:
        if create:
            response = await admin.create_topics([NewTopic(t, p, replication) for t, p in topics.items()])
            for name, code, *rest in response.topic_errors:
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                    raise TopicsError(f"CreateTopics {name!r} failed: {for_code(code).__name__} {rest}")
        loop = asyncio.get_running_loop()
        deadline, found = loop.time() + timeout, {}
        while True:
            try:  # describe only existing topics: Tansu auto-creates (4 partitions) on metadata requests
                existing = sorted(set(await admin.list_topics()) & set(topics))
                described = await admin.describe_topics(existing) if existing else []
                found = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
            except KafkaError:
                if not create:
                    raise
            if not (wrong := {t: {"want": p, "have": found.get(t)} for t, p in topics.items() if found.get(t) != p}):
                return
            if not create:
                raise ConfigError(
                    f"create_topics is false but these topics on {bootstrap} are missing or have another "
                    f"partition count: {wrong}. Fix: create them with those partition counts (e.g. kafka-topics.sh "
                    f"--create --topic NAME --partitions N), or set CHURNWATCH_CREATE_TOPICS=true")
            if loop.time() > deadline:
                raise TopicsError(f"topics on {bootstrap} do not match after {timeout:g}s: {wrong} "
                                           "(an existing topic keeps its partition count)")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicNames:
    """The full names of a deployment's topics."""

    events: str
    alerts: str
    scores: str
    dlq: str
    home: str  # events forwarded to their subscriber's home partition (streams/repartition.py)

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        prefix = settings.topic_prefix
        return cls(events=prefix + EVENTS_TOPIC, alerts=prefix + ALERTS_TOPIC,
                   scores=prefix + SCORES_TOPIC, dlq=prefix + DLQ_TOPIC,
                   home=prefix + home_topic(settings.app_id))

    def all(self) -> tuple[str, ...]:
        return astuple(self)


async def ensure_topics(settings: Settings, names: tuple[str, ...] | None = None) -> None:
    """Create the deployment's topics (``names``, default: all of them) where missing and
    check their partition counts; with ``create_topics = false`` only check (raises
    :class:`churnwatch.core.errors.ConfigError` naming what is missing and the fix)."""
    from churnwatch.infra.kafka.auth import client_options

    wanted = names if names is not None else TopicNames.of(settings).all()
    await create_topics(settings.bootstrap, {t: settings.partitions for t in wanted},
                        replication=settings.topic_replication_factor,
                        client_options=client_options(settings),
                        create=settings.create_topics)
