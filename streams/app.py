"""The Faust app: wires the topics, one batching agent, the pipeline and the sinks.

Nothing here computes anything; see ``streams.pipeline`` for the batch logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from typing import Any

import faust
import msgspec
import redis as syncredis
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from alerting.ledger import AlertLedger
from alerting.playbook import load_playbook
from alerting.policy import ContactPolicy
from alerting.storm import StormGuard
from churnwatch.broker_guard import EXIT_CODE, BrokerGuard, BrokerResetError
from churnwatch.config import DLQ_TOPIC, EVENTS_TOPIC, Settings
from churnwatch.errors import ConfigError
from churnwatch.failpoints import failpoint
from churnwatch.kafka_auth import broker_credentials, client_options
from churnwatch.keys import Keys
from churnwatch.metrics import Metrics
from features.schema import DAY_MS
from features.silence import SilenceIndex
from features.store import FeatureStore, StoreConfig, warm_up
from online_models.checkpoint import CHECKPOINT_KEY, Checkpointer, decode
from online_models.model import ChurnModel
from rules.engine import compile_ruleset
from rules import registry
from rules.ruleset import load_ruleset, parse_ruleset
from streams.pipeline import RETRYABLE, DeadLetter, Pipeline, Record
from streams.publisher import KafkaPublisher

log = logging.getLogger("churnwatch.worker")


def build_pipeline(settings: Settings, redis: Any, metrics: Metrics) -> Pipeline:
    """Load and validate rules and playbook, compile the kernels, and assemble the pipeline."""
    store = FeatureStore(redis, StoreConfig(lateness_ms=int(settings.lateness_days * DAY_MS),
                                            ttl_s=settings.state_ttl_days * 86_400))
    ledger = AlertLedger(redis, ttl_s=settings.state_ttl_days * 86_400)
    sync = syncredis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                    socket_connect_timeout=settings.redis_timeout_s)
    published = registry.decode(sync.get(registry.ACTIVE_KEY))
    ruleset = (parse_ruleset(published.text, published.source) if published
               else load_ruleset(settings.rules_file))
    rules = compile_ruleset(ruleset)
    warm_up()
    model = decode(sync.get(CHECKPOINT_KEY))
    do_not_contact = frozenset(m.decode() for m in sync.smembers(Keys().do_not_contact()))
    sync.close()
    silence = SilenceIndex(quiet_ms=int(settings.silence_quiet_days * DAY_MS),
                           every_ms=int(settings.silence_every_days * DAY_MS))
    playbook = load_playbook(settings.playbook_file)
    playbook.check_segments(rules.ruleset.segment_names)
    policy = ContactPolicy(settings.max_contacts_per_month, settings.max_offers_per_month,
                           settings.quiet_start_hour, settings.quiet_end_hour, settings.timezone)
    pipeline = Pipeline(store, ledger, rules, model or ChurnModel(), playbook, metrics, silence,
                        policy)
    pipeline.do_not_contact = do_not_contact
    pipeline.storm = StormGuard(settings.storm_max_alerts_per_hour)
    return pipeline


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    """A Faust app consuming churn.events in micro-batches through the pipeline."""
    if not settings.broker or not settings.redis_url:
        raise ConfigError("the worker needs CHURNWATCH_BROKER and CHURNWATCH_REDIS_URL "
                          "(or run `churnwatch demo`, which starts local ones)")
    if settings.webhook_url and not settings.webhook_secret.get_secret_value():
        raise ConfigError("CHURNWATCH_WEBHOOK_URL is set but CHURNWATCH_WEBHOOK_SECRET is empty. "
                          "Fix: set the receiver's signing secret (whsec_<base64> or text)")
    metrics = metrics or Metrics()
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        web_bind="127.0.0.1",
        web_tables_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        stream_wait_empty=False,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        broker_commit_every=settings.batch_max,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_credentials=broker_credentials(settings),
    )
    redis = aioredis.Redis.from_url(settings.redis_url, health_check_interval=10,
                                    socket_timeout=settings.redis_timeout_s,
                                    socket_connect_timeout=settings.redis_timeout_s)
    pipeline = build_pipeline(settings, redis, metrics)
    try:
        publisher = KafkaPublisher(app, settings, redis, metrics)
    except ValueError as exc:  # an unreadable webhook secret
        raise ConfigError(f"CHURNWATCH_WEBHOOK_SECRET: {exc}. Fix: use whsec_<base64> or text")
    events_topic = app.topic(EVENTS_TOPIC, partitions=settings.partitions, internal=False)

    @app.agent(events_topic, concurrency=1)
    async def score(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            records = [Record(e.message.topic, e.message.partition, e.message.offset,
                              e.value or b"", int(e.message.timestamp * 1000))
                       for e in batch]
            await _to_the_end(_run_batch(pipeline, publisher, records))
            failpoint("before_offset_commit")  # acked (and committed) only after this

    @app.task
    async def serve_metrics() -> None:
        server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host,
                                      registry=metrics.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)

    guard = BrokerGuard(redis, settings.bootstrap, settings.app_id, EVENTS_TOPIC,
                        pipeline.store.config.keys.broker_offsets(settings.app_id),
                        client_options(settings))

    @app.timer(interval=settings.broker_check_interval_s)
    async def check_broker() -> None:
        try:
            await guard.check()
        except BrokerResetError as exc:
            _stop_for_broker_reset(app, metrics, exc)
        except (syncredis.RedisError, KafkaError, OSError) as exc:  # checked again next time
            log.warning("broker check skipped: %s", type(exc).__name__)

    checkpointer = Checkpointer(redis, pipeline.model)
    watcher = registry.RulesWatcher(redis, pipeline)

    @app.timer(interval=settings.silence_interval_s)
    async def sweep_silence() -> None:
        for tp in sorted(app.consumer.assignment()):
            if tp.topic == EVENTS_TOPIC:
                try:
                    await pipeline.sweep(tp.partition, publisher)
                except RETRYABLE as exc:
                    log.warning("silence sweep skipped: %s", type(exc).__name__)

    @app.timer(interval=10.0)
    async def refresh() -> None:
        pipeline.quality.snapshot()  # refreshes the model-quality gauges
        try:
            members = await redis.smembers(pipeline.store.config.keys.do_not_contact())
            pipeline.do_not_contact = frozenset(m.decode() for m in members)
        except RETRYABLE as exc:
            log.warning("cannot refresh the do-not-contact list: %s", type(exc).__name__)

    @app.timer(interval=2.0)
    async def release_held() -> None:
        try:
            await pipeline.release(publisher)
        except RETRYABLE as exc:
            log.warning("cannot release held alerts: %s", type(exc).__name__)

    @app.timer(interval=1.0)
    async def watch_rules() -> None:
        try:
            await watcher.poll()
        except RETRYABLE as exc:
            log.warning("cannot poll the published ruleset: %s", type(exc).__name__)

    @app.timer(interval=10.0)
    async def checkpoint_model() -> None:
        try:
            await checkpointer.save_if_changed()
        except RETRYABLE as exc:
            log.warning("cannot checkpoint the model: %s", type(exc).__name__)

    app.churnwatch_pipeline = pipeline  # type: ignore[attr-defined]
    return app


def _stop_for_broker_reset(app: faust.App, metrics: Metrics, exc: BrokerResetError) -> None:
    """Report loudly, stop consuming, and stop the worker gracefully with exit code 3."""
    metrics.broker_reset.set(1)
    log.error("%s", exc)
    app.churnwatch_exit_code = EXIT_CODE  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):  # best effort: the stop below is what matters
        app.consumer.pause_partitions(app.consumer.assignment())
    os.kill(os.getpid(), signal.SIGTERM)


async def _to_the_end(batch: Awaitable[None]) -> None:
    """Await ``batch`` even if the agent is cancelled meanwhile (SIGTERM: Faust cancels the
    agent, then acknowledges what it consumed), so a stopping worker never leaves a batch
    half-published; the cancellation is raised once the batch is done."""
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        log.info("stopping: finishing the current batch first")
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue
        raise


async def _run_batch(pipeline: Pipeline, publisher: KafkaPublisher,
                     records: list[Record]) -> None:
    """Run a batch; on an unexpected error dead-letter its records instead of dropping them
    (Faust would acknowledge them anyway)."""
    try:
        await pipeline.run(records, publisher)
    except Exception as exc:  # noqa: BLE001 - last line of defence before Faust acks
        log.exception("batch of %d records failed; sending them to %s", len(records), DLQ_TOPIC)
        letters = [DeadLetter(f"internal error: {type(exc).__name__}", "internal", r.topic,
                              r.partition, r.offset, -1, r.value.decode("utf-8", "replace"))
                   for r in records]
        pipeline.metrics.dead_letters.labels("internal").inc(len(letters))
        await publisher.dead_letters([msgspec.json.encode(d) for d in letters])
