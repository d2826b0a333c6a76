"""The Kafka topics of one deployment: their names and their creation at startup.

Every name starts with ``topic_prefix`` (empty by default), so two deployments can share a
cluster: ``staging.`` gives ``staging.churn.events``, ``staging.churn.alerts``, … and the
group's internal ``staging.<app_id>.churn.events.home``. Topics are created with
``partitions`` partitions and ``topic_replication_factor`` replicas, through the same client
security settings as every other client (:func:`churnwatch.kafka_auth.client_options`); with
``create_topics = false`` nothing is created and startup fails if one is missing.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from churnwatch.config import (ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC, Settings,
                               home_topic)


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
    :class:`churnwatch.errors.ConfigError` naming what is missing and the fix)."""
    from churnwatch.embedded import create_topics
    from churnwatch.kafka_auth import client_options

    wanted = names if names is not None else TopicNames.of(settings).all()
    await create_topics(settings.bootstrap, {t: settings.partitions for t in wanted},
                        replication=settings.topic_replication_factor,
                        client_options=client_options(settings),
                        create=settings.create_topics)
