"""The Faust app: wires the topics, one batching agent, the pipeline and the sinks.

Nothing here computes anything; see ``streams.pipeline`` for the batch logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
import uuid
from collections.abc import Awaitable
from typing import Any

import faust
import redis as syncredis
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from churnwatch.assembly import build_pipeline
from churnwatch.core.errors import (
    ConfigError,
    FencedError,
    RedisRefused,
    RetryableError,
)
from churnwatch.core.keys import Keys
from churnwatch.infra.config import Settings
from churnwatch.infra.kafka.auth import broker_credentials, client_options
from churnwatch.infra.kafka.broker_guard import EXIT_CODE, BrokerGuard, BrokerResetError
from churnwatch.infra.kafka.offsets import end_offsets
from churnwatch.infra.kafka.produce import partition_for
from churnwatch.infra.kafka.topics import TopicNames
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.redis.errors import is_retryable, refusal_line
from churnwatch.infra.runtime import gc_tuning
from churnwatch.infra.runtime.loop_watch import LoopWatch
from churnwatch.infra.runtime.metrics import Metrics
from churnwatch.infra.sections import Sections
from churnwatch.web.server import ReadyProbe, build_probes_app
from churnwatch.web.server import build_app as build_web_app
from churnwatch.web.server import start as start_web
from churnwatch.web.worker import worker_deps
from online_models.learner import Learner, ModelWatcher
from online_models.versions import ModelVersions
from rules import registry
from streams.assignment import Assignment
from streams.batch_loop import BatchLoop
from streams.fetch import RecordBuffer
from streams.lag import LagGauge, consumer_lags
from streams.publisher import KafkaPublisher
from streams.repartition import Homes
from streams.sweep import sweep_in_pages
from streams.transport import ChurnApp

log = logging.getLogger("churnwatch.worker")
REFUSED_EXIT_CODE = 78  # EX_CONFIG: Redis refused the credentials or a permission


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    """A Faust app consuming churn.events in micro-batches through the pipeline."""
    return Worker(settings, metrics).app


class Worker:
    """One churnwatch worker: the Faust app (consumer group, rebalances, producer), the
    pipeline and its batch loop, and the worker's periodic duties, wired once in the
    constructor. Each duty is a method; :meth:`_register` hands them to Faust."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        if not settings.broker or not settings.redis_url:
            raise ConfigError("the worker needs CHURNWATCH_BROKER and CHURNWATCH_REDIS_URL "
                              "(or run `churnwatch demo`, which starts local ones)")
        if settings.webhook_url and not settings.webhook_secret.get_secret_value():
            raise ConfigError("CHURNWATCH_WEBHOOK_URL is set but CHURNWATCH_WEBHOOK_SECRET is "
                              "empty. Fix: set the receiver's signing secret, whsec_<base64>")
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.topics = topics = TopicNames.of(settings)
        self.records = RecordBuffer(settings.batch_max, settings.batch_max_bytes,
                                    settings.batch_within_s)
        self.app = _faust_app(settings, topics, self.records)
        self.redis = redis = connect(settings, health_check_interval=10)
        # churn.events and the events forwarded to their home partitions
        # (streams/repartition.py) are consumed by the batch loop, a fetch at a time
        # (streams/transport.py); the topics are registered so that Faust's consumer
        # subscribes to them (co-partitioned: partition p of both goes to one worker)
        homes = Homes(topics.events, topics.home, settings.partitions)
        partitions = Assignment(redis, Keys(), homes)
        partitions.own(settings.app_id, _member())
        self.pipeline = pipeline = build_pipeline(settings, redis, metrics, partitions)
        try:
            self.publisher = KafkaPublisher(self.app, settings, redis, metrics)
        except ValueError as exc:  # an unreadable webhook secret
            raise ConfigError(f"CHURNWATCH_WEBHOOK_SECRET: {exc}") from None
        for topic in (homes.source, homes.topic):
            self.app.topics.add(self.app.topic(topic, partitions=settings.partitions,
                                               internal=False))
        self.loop = BatchLoop(self.records, pipeline, self.publisher,
                              lambda offsets: self.app.consumer.commit_offsets(offsets),
                              self.stop_refused)
        self.guard = BrokerGuard(redis, settings.bootstrap, settings.app_id, topics.events,
                                 pipeline.store.config.keys.broker_offsets(settings.app_id),
                                 client_options(settings))
        self.rules_watcher = registry.RulesWatcher(redis, pipeline)
        versions = ModelVersions(redis, metrics=metrics)
        self.model_watcher = ModelWatcher(versions, pipeline.switch_model,
                                          pipeline.model.version)
        learning = Sections.of(settings).learner
        self.learner = Learner(redis, versions, metrics, _member(),
                               publish_every_s=learning.publish_every_s,
                               auto_promote=learning.auto_promote,
                               keep_versions=learning.keep_versions,
                               dedup_window_ms=learning.dedup_window_ms,
                               dedup_capacity=learning.dedup_capacity,
                               max_attrs=learning.max_attrs,
                               allowed_attrs=learning.allowed_attrs,
                               publish_growth=learning.publish_growth)
        self.lag = LagGauge(metrics.consumer_lag)
        self._home_ends: asyncio.Future[None] | None = None  # read after each assignment
        self._register()
        self.app.churnwatch_pipeline = pipeline  # type: ignore[attr-defined]

    def _register(self) -> None:
        app, settings = self.app, self.settings
        app.on_partitions_revoked.connect(self.partitions_revoked)
        app.on_partitions_assigned.connect(self.partitions_assigned)
        app.before_stop.append(self.loop.stop)
        for task in (self.consume, self.serve_metrics, self.serve_web, self.watch_loop):
            app.task(task)
        timers = [(settings.broker_check_interval_s, self.check_broker),
                  (settings.silence_interval_s, self.sweep_silence),
                  (10.0, self.refresh), (2.0, self.release_held), (1.0, self.watch_rules),
                  (2.0, self.watch_model), (settings.gc_interval_s, self.collect_garbage),
                  (2.0, self.refresh_lag)]
        if settings.model_learner:
            timers.append((1.0, self.learn))
            app.before_stop.append(self.hand_over_learning)
        for interval, duty in timers:
            app.timer(interval=interval)(duty)

    # ----------------------------------------------------------------- rebalances
    async def partitions_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        """Finish the batches under way and commit their offsets before the partitions go:
        their next owner starts from there (what it re-reads is skipped as replays)."""
        self.pipeline.revoking()
        self.records.drop([(tp.topic, tp.partition) for tp in revoked])
        if not await self.loop.settle(self.settings.session_timeout_s * 0.8):
            log.warning("partitions revoked while a batch was still under way")
        self.pipeline.store.cache.clear()  # another worker may write these subscribers now

    async def partitions_assigned(self, sender: Any, assigned: Any, **_: Any) -> None:
        """Claim the partitions and load their applied offsets. Faust's recovery may already
        have sought to the committed offsets and fetched again: the buffer is kept, and
        batches wait until the claims are loaded."""
        try:
            await self.pipeline.assigned(sorted((tp.topic, tp.partition) for tp in assigned
                                                if tp.topic in self.app.record_topics))
        except RedisRefused as exc:  # batches stay blocked until the worker stops
            self.stop_refused(exc)
            return
        partitions = self.pipeline.partitions
        if partitions.home_partitions():
            self._home_ends = asyncio.ensure_future(self.read_home_ends(partitions.count))

    async def read_home_ends(self, assignment: int) -> None:
        """Read the internal topic's end offsets after the claim: once this worker has
        applied its home partitions' forwarded events up to them, it applies events that
        arrive away from home there itself instead of forwarding them
        (``streams.assignment``). On failure it keeps forwarding them, which is correct."""
        partitions = self.pipeline.partitions
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(5),
                                               wait=wait_exponential(0.2, max=5),
                                               retry=retry_if_exception_type(
                                                   (KafkaError, OSError)), reraise=True):
                with attempt:
                    ends = await end_offsets(self.settings.bootstrap, self.topics.home,
                                             client_options(self.settings))
        except (KafkaError, OSError) as exc:
            log.warning("could not read the end of %s (%s): events away from their home "
                        "partition are forwarded there until the next rebalance",
                        self.topics.home, type(exc).__name__)
            return
        owned = set(partitions.home_partitions())
        partitions.home_ends({p: end for p, end in ends.items() if p in owned}, assignment)

    # ----------------------------------------------------------------- tasks
    async def consume(self) -> None:
        await self.loop.run()

    async def serve_metrics(self) -> None:
        settings = self.settings
        server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host,
                                      registry=self.metrics.registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)

    async def watch_loop(self) -> None:
        await LoopWatch(self.metrics.loop_lag.observe,
                        stall_s=self.settings.loop_stall_log_s).run()

    async def serve_web(self) -> None:
        settings, topics, app = self.settings, self.topics, self.app
        if not settings.web_enabled:
            return

        async def send_event(subscriber_id: str, payload: bytes) -> None:
            await (await app.producer.send(
                topics.events, subscriber_id.encode(), payload,
                partition_for(subscriber_id, settings.partitions), None, None))

        def assigned() -> bool:
            return any(tp.topic == topics.events for tp in app.consumer.assignment())

        probe = ReadyProbe(self.redis, assigned)
        token = settings.web_token.get_secret_value()
        if not token:  # the contract's stable keys alone start a worker: probes only
            _, port = await start_web(build_probes_app(probe), settings.web_host,
                                      settings.web_port)
            log.warning("web on http://%s:%d/: /healthz and /readyz only; the retention "
                        "team's page and API are off because CHURNWATCH_WEB_TOKEN is empty. "
                        "Fix: set it to a long random string, e.g. `python -c 'import "
                        "secrets; print(secrets.token_urlsafe(32))'`", settings.web_host, port)
            return
        web_app = build_web_app(token, worker_deps(settings, self.redis, self.pipeline,
                                                   send_event), probe,
                                session_ttl_s=settings.web_session_ttl_s,
                                logins_per_minute=settings.web_logins_per_minute)
        _, port = await start_web(web_app, settings.web_host, settings.web_port)
        log.info("web on http://%s:%d/ (retention page; /healthz, /readyz)",
                 settings.web_host, port)

    # ----------------------------------------------------------------- timers
    async def check_broker(self) -> None:
        try:
            await self.guard.check()
        except BrokerResetError as exc:
            _stop_for_broker_reset(self.app, self.metrics, exc)
        except RedisRefused as exc:
            self.stop_refused(exc)
        except (syncredis.RedisError, RetryableError, KafkaError, OSError) as exc:
            log.warning("broker check skipped: %s", type(exc).__name__)  # checked again

    async def sweep_silence(self) -> None:
        settings = self.settings
        for tp in sorted(self.app.consumer.assignment()):
            if tp.topic == self.topics.events:
                ok = await self._survive_redis(
                    "sweep", "silence sweep skipped",
                    sweep_in_pages(self.pipeline, self.publisher, tp.partition,
                                   settings.silence_page, settings.silence_per_tick,
                                   settings.silence_share, lambda: self.records.events > 0))
                self.metrics.silence_sweeps.labels("ok" if ok else "error").inc()

    async def refresh(self) -> None:
        if self.learner.leading:
            self.learner.quality.snapshot()  # refreshes the model-quality gauges
        await self._survive_redis("dnc_refresh", "cannot refresh the do-not-contact list",
                                  self._refresh_do_not_contact())

    async def _refresh_do_not_contact(self) -> None:
        members = await self.redis.smembers(self.pipeline.store.config.keys.do_not_contact())
        self.pipeline.do_not_contact = frozenset(m.decode() for m in members)

    async def release_held(self) -> None:
        await self._survive_redis("release", "cannot release held alerts",
                                  self.pipeline.release(self.publisher))

    async def watch_rules(self) -> None:
        await self._survive_redis("rules_poll", "cannot poll the published ruleset",
                                  self.rules_watcher.poll())

    async def watch_model(self) -> None:
        await self._survive_redis("model_poll", "cannot poll the active model version",
                                  self.model_watcher.poll())

    async def learn(self) -> None:
        head = self.learner.head
        await self._survive_redis("learner", "learner step skipped", self.learner.step())
        if self.learner.head != head:  # it published: score with it now, not at the next poll
            await self.watch_model()

    async def hand_over_learning(self) -> None:
        """On stop: publish what this worker learned and release the learner lock, so the
        next learner resumes at once, not ``lock_ms`` later under live traffic."""
        await self._survive_redis("learner", "learner hand-over skipped",
                                  self.learner.hand_over())

    async def collect_garbage(self) -> None:
        gc_tuning.collect()  # cycles that outlived a young collection (infra/runtime/gc_tuning.py)

    async def refresh_lag(self) -> None:
        self.lag.update(consumer_lags(self.app.consumer, self.app.record_topics,
                                      self.pipeline.delivery.positions))

    def stop_refused(self, exc: BaseException) -> None:
        """Redis refused the worker's credentials or a command's permission: one line with
        the fix, and the worker stops with exit code 78 (EX_CONFIG). What it had not applied
        is not committed: the next worker, once Redis lets it, reads it again."""
        _stop(self.app, REFUSED_EXIT_CODE, f"stopping: {refusal_line(exc) or exc}")

    async def _survive_redis(self, operation: str, what: str, work: Awaitable[Any]) -> bool:
        """Await a timer's ``work``; a Redis outage is counted and logged (the timer tries
        again on its next tick) and gives False. Other errors, bugs included, propagate."""
        try:
            await work
        except FencedError:  # the partition moved to another worker: it sweeps it now
            log.info("%s: the partition was claimed by another worker", what)
            return False
        except RedisRefused as exc:  # a misconfiguration, not an outage
            self.stop_refused(exc)
            return False
        except (syncredis.RedisError, RetryableError) as exc:
            if not is_retryable(exc):  # e.g. a script error: a bug, not an outage
                raise
            self.metrics.redis_errors.labels(operation).inc()
            log.warning("%s: %s", what, type(exc).__name__)
            return False
        return True


def _member() -> str:
    """This process's name in the group and for the learner's lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _faust_app(settings: Settings, topics: TopicNames, records: RecordBuffer) -> ChurnApp:
    return ChurnApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        records=records,
        record_topics=frozenset({topics.events, topics.home}),
        # no Faust tables: keep Faust's data directory out of the working directory
        datadir=os.path.join(tempfile.gettempdir(), f"{settings.app_id}-faust-data"),
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
        producer_acks=-1,
        producer_linger_ms=5,
        broker_credentials=broker_credentials(settings),
    )


def _stop_for_broker_reset(app: faust.App, metrics: Metrics, exc: BrokerResetError) -> None:
    """Report loudly, stop consuming, and stop the worker gracefully with exit code 3."""
    metrics.broker_reset.set(1)
    _stop(app, EXIT_CODE, str(exc))


def _stop(app: faust.App, code: int, why: str) -> None:
    """Log ``why`` once, stop consuming, and stop the worker gracefully with exit ``code``."""
    if getattr(app, "churnwatch_exit_code", None):
        return  # stopping already
    log.error("%s", why)
    app.churnwatch_exit_code = code  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):  # best effort: the stop below is what matters
        app.consumer.pause_partitions(app.consumer.assignment())
    os.kill(os.getpid(), signal.SIGTERM)
