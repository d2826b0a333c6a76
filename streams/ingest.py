"""HTTP ingest: ``POST /v1/events`` → validated events on ``churn.events`` (``churnwatch ingest``).

It runs as its own process, not inside the stream worker: ingest scales independently of the
workers (add ingest processes behind a load balancer, add workers for partitions), and a slow
or rebalancing pipeline never blocks HTTP — the only thing a request waits for is the
broker's acknowledgement.

Per request: bearer token → feed (401); Content-Type and Content-Encoding (415); body size
(413); bounded requests in flight, globally and per feed (503 + Retry-After); the body read
within time, rate and size bounds, inflated with a cap (408/413, :mod:`streams.ingest_body`);
events per request (413); the feed's rate limit, shared by the replicas through Redis (429 +
Retry-After, :mod:`streams.ingest_ratelimit`); then every record is validated with the event
contract (:func:`churnwatch.core.events.decode_event`, exactly as ``decode_payload`` does) and
checked against the feed's grant (event types, subscriber prefixes:
:mod:`streams.ingest_feeds`). Valid events get a ``"feed"`` field and their ``event_id``
namespaced as ``<feed>:<event_id>`` (so one feed's ids never suppress another's), and are
packed per partition (Kafka's default partitioner on the normalised subscriber id,
:func:`churnwatch.infra.kafka.produce.partition_for`) into JSON-array messages of up to
``ingest_per_message`` events; invalid and forbidden ones become
:class:`streams.records.DeadLetter` records on ``churn.dlq`` (kind ``invalid`` or
``forbidden``, topic ``http:<feed>``). The response is sent only after the broker acknowledged both
(acks=all), so "accepted" means durable; a broker error or timeout answers 503 (retry the
batch: ``event_id`` dedup downstream makes a resend harmless).

The app takes its producer as a dependency (:class:`Producer`), so tests can inject one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from churnwatch.core.errors import ConfigError, EventError
from churnwatch.core.events import MAX_EVENT_BYTES, decode_event, split_records
from churnwatch.infra.config import EVENTS_TOPIC, Settings
from churnwatch.infra.kafka.produce import partition_for
from churnwatch.infra.kafka.topics import TopicNames
from churnwatch.infra.runtime.metrics import IngestMetrics
from streams.ingest_auth import InFlight, TokenStore
from streams.ingest_body import BodyError, content_encoding, read_body
from streams.ingest_feeds import namespaced_id
from streams.ingest_http import runner_options
from streams.ingest_openapi import (
    Health,
    IngestResult,
    Rejection,
    openapi_document,
    reason_kind,
)
from streams.ingest_ratelimit import FeedRateLimiter
from streams.problem import problem, problem_middleware
from streams.records import DeadLetter

log = logging.getLogger("churnwatch.ingest")

MAX_MESSAGE_BYTES = 900_000  # below Kafka's default max.message.bytes (1 MB)
CONTENT_TYPES = ("application/json", "application/x-ndjson")
Message = tuple[str, "int | None", bytes]  # topic, partition (None = any), value


class Producer(Protocol):
    """Where the ingest app produces; ``produce`` returns once the broker acknowledged all."""

    partitions: int

    async def produce(self, messages: Sequence[Message]) -> None: ...


class KafkaIngestProducer:
    """An aiokafka producer with acks=all; ``partitions`` is read from the topic's metadata."""

    def __init__(self, bootstrap: str, partitions: int, linger_ms: int = 0, *,
                 topic: str = EVENTS_TOPIC, client_options: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.linger_ms = linger_ms
        self.topic = topic  # the events topic (its partition count is read at start)
        self.client_options = client_options or {}  # security (churnwatch.infra.kafka.auth)
        self._producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          linger_ms=self.linger_ms, max_batch_size=1 << 20,
                                          max_request_size=8 << 20, compression_type=None,
                                          **self.client_options)
        await self._producer.start()
        found = await self._producer.partitions_for(self.topic)
        if found:
            self.partitions = len(found)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def produce(self, messages: Sequence[Message]) -> None:
        assert self._producer is not None
        futures = [await self._producer.send(topic, value, partition=part)
                   for topic, part, value in messages]
        await asyncio.gather(*futures)


class IngestState:
    """Everything a request needs; one per app."""

    def __init__(self, settings: Settings, producer: Producer, tokens: TokenStore,
                 metrics: IngestMetrics, limiter: FeedRateLimiter) -> None:
        self.settings = settings
        self.producer = producer
        self.tokens = tokens
        self.metrics = metrics
        self.limiter = limiter
        self.topics = TopicNames.of(settings)
        self.in_flight = InFlight(settings.ingest_max_in_flight,
                                  settings.ingest_max_in_flight_per_feed)
        self.openapi = orjson.dumps(openapi_document(settings.ingest_max_body_bytes,
                                                     settings.ingest_max_events))


STATE = web.AppKey("churnwatch_ingest", IngestState)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(body), headers=headers,
                        content_type="application/json")


def _error(status: int, error: str, reason: str, retry_after: int | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    """A problem+json answer (:mod:`streams.problem`); ``error`` is its code and, with
    ``reason`` (= detail), an extension member kept from the earlier error bodies."""
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return problem(status, reason, error, headers=headers, reason=reason)


_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])


def stamped(raw: bytes, feed: str, event_id: str) -> bytes:
    """The event with ``"feed": <feed>`` and its ``event_id`` namespaced by the feed
    (:func:`streams.ingest_feeds.namespaced_id`); every other field keeps its original
    bytes (numbers beyond 64 bits included)."""
    doc = _fields.decode(raw)
    doc["event_id"] = msgspec.Raw(orjson.dumps(namespaced_id(feed, event_id)))
    doc["feed"] = msgspec.Raw(orjson.dumps(feed))
    return msgspec.json.encode(doc)


def pack(routed: Sequence[tuple[int, bytes]], per_message: int,
         max_bytes: int = MAX_MESSAGE_BYTES, topic: str = EVENTS_TOPIC) -> list[Message]:
    """(partition, event bytes) in order → JSON-array messages per partition, order kept."""
    buffers: dict[int, list[bytes]] = {}
    sizes: dict[int, int] = {}
    out: list[Message] = []
    for part, raw in routed:
        buf = buffers.get(part)
        if buf is None:
            buf = buffers[part] = []
            sizes[part] = 2
        if buf and (len(buf) >= per_message or sizes[part] + len(raw) + 1 > max_bytes):
            out.append((topic, part, b"[" + b",".join(buf) + b"]"))
            buf.clear()
            sizes[part] = 2
        buf.append(raw)
        sizes[part] += len(raw) + 1
    out += [(topic, part, b"[" + b",".join(buf) + b"]")
            for part, buf in buffers.items() if buf]
    return out


async def post_events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    response = await _post_events(request, state)
    state.metrics.requests.labels(str(response.status)).inc()
    state.metrics.latency.observe(time.perf_counter() - started)
    return response


async def _post_events(request: web.Request, state: IngestState) -> web.Response:
    s = state.settings
    feed = state.tokens.feed_for(request.headers.get("Authorization"))
    if feed is None:
        return _error(401, "unauthorized", "missing or unknown bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="churnwatch"'})
    if request.content_type not in CONTENT_TYPES:
        return _error(415, "unsupported_media_type",
                      "Content-Type must be application/json or application/x-ndjson")
    try:  # only now, after the token: an anonymous client never costs an inflation
        encoding = content_encoding(request.headers.get("Content-Encoding"))
    except BodyError as exc:
        return _error(exc.status, exc.error, exc.reason)
    if request.content_length is not None and request.content_length > s.ingest_max_body_bytes:
        return _error(413, "body_too_large", f"body larger than {s.ingest_max_body_bytes} bytes")
    full = state.in_flight.try_acquire(feed)
    if full is not None:
        held = (f"{s.ingest_max_in_flight} requests" if full == "global" else
                f"{state.in_flight.per_feed} requests of feed {feed!r}")
        return _error(503, "overloaded", f"{held} in flight; retry later", retry_after=1)
    state.metrics.in_flight.inc()
    try:
        return await _admitted(request, state, feed, encoding)
    finally:
        state.in_flight.release(feed)
        state.metrics.in_flight.dec()


async def _admitted(request: web.Request, state: IngestState, feed: str,
                    encoding: str) -> web.Response:
    s, metrics = state.settings, state.metrics
    try:
        body = await read_body(request.content, encoding, s.ingest_max_body_bytes,
                               s.ingest_body_timeout_s, s.ingest_body_min_bytes_per_s,
                               s.ingest_body_grace_s)
    except BodyError as exc:
        metrics.refused.labels(feed, str(exc.status)).inc()
        log.warning("feed %s: request refused (%d %s)", feed, exc.status, exc.error)
        return _error(exc.status, exc.error, exc.reason)
    if not body.strip():
        return _error(400, "empty_body", "the body holds no event")
    try:
        records = split_records(body)
        split_error = None
    except EventError as exc:  # e.g. a JSON array that does not parse: one rejected record
        records, split_error = [body.strip()], exc.reason
    if len(records) > s.ingest_max_events:
        metrics.refused.labels(feed, "413").inc(len(records))
        return _error(413, "too_many_events", f"{len(records)} events in one request; at most "
                      f"{s.ingest_max_events} (split the batch)")
    wait = await state.limiter.retry_after(feed, len(records))
    if wait:
        metrics.refused.labels(feed, "429").inc(len(records))
        return _error(429, "rate_limited", f"feed {feed!r} exceeds "
                      f"{s.ingest_rate_per_feed:g} events/s", retry_after=wait)

    partitions = state.producer.partitions
    grant = state.tokens.grant(feed)
    routed: list[tuple[int, bytes]] = []
    rejected: list[tuple[int, str, bytes, str]] = []  # index, reason, raw, DLQ kind
    for index, raw in enumerate(records):
        try:
            if split_error is not None:
                raise EventError(split_error)
            event = decode_event(raw)
        except EventError as exc:
            rejected.append((index, exc.reason, raw, "invalid"))
            continue
        refusal = grant.refusal(feed, event)
        if refusal is not None:
            rejected.append((index, refusal, raw, "forbidden"))
            continue
        routed.append((partition_for(event.subscriber_id, partitions),
                       stamped(raw, feed, event.event_id)))
    messages = pack(routed, s.ingest_per_message, topic=state.topics.events)
    topic = f"http:{feed}"
    messages += [(state.topics.dlq, None, msgspec.json.encode(DeadLetter(
        reason, kind, topic, -1, -1, index, raw[:MAX_EVENT_BYTES].decode("utf-8", "replace"))))
        for index, reason, raw, kind in rejected]
    try:
        await asyncio.wait_for(state.producer.produce(messages), s.ingest_produce_timeout_s)
    except Exception as exc:  # noqa: BLE001 - any broker failure: not durable, say so
        log.warning("produce failed for feed %s (%d events): %s", feed, len(records),
                    type(exc).__name__)
        metrics.refused.labels(feed, "503").inc(len(records))
        return _error(503, "broker_unavailable", "the broker did not acknowledge the events; "
                      "retry the whole batch", retry_after=1)
    metrics.accepted.labels(feed).inc(len(routed))
    out = []
    for index, reason, _, dlq_kind in rejected:
        kind = "forbidden" if dlq_kind == "forbidden" else reason_kind(reason)
        metrics.rejected.labels(feed, kind).inc()
        out.append(Rejection(index, reason, kind,  # type: ignore[arg-type]
                             403 if dlq_kind == "forbidden" else 422))
    return _json(200, IngestResult(len(routed), out, feed))


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE].openapi, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return _json(200, Health("ok"))


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def rate_limiter(settings: Settings) -> FeedRateLimiter:
    """The per-feed rate limit of ``settings``: in Redis (shared by every ingest replica)
    when ``redis_url`` is set, else in this process."""
    burst = settings.ingest_rate_burst or max(int(settings.ingest_rate_per_feed),
                                              settings.ingest_max_events)
    return FeedRateLimiter(settings.ingest_rate_per_feed, burst, settings.redis_url,
                           settings.redis_cluster, timeout_s=min(settings.redis_timeout_s, 2.0))


def create_ingest_app(settings: Settings, producer: Producer, tokens: TokenStore,
                      metrics: IngestMetrics | None = None,
                      limiter: FeedRateLimiter | None = None) -> web.Application:
    """The aiohttp application; the caller owns (starts and stops) ``producer``, and serves
    it with :func:`streams.ingest_http.runner_options`. The rate limiter's connections are
    closed with the app."""
    limiter = limiter or rate_limiter(settings)
    app = web.Application(client_max_size=settings.ingest_max_body_bytes,
                          middlewares=[problem_middleware(coded=True)])

    async def close_limiter(app: web.Application) -> None:
        await limiter.close()

    app.on_cleanup.append(close_limiter)
    app[STATE] = IngestState(settings, producer, tokens, metrics or IngestMetrics(), limiter)
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run ``churnwatch ingest`` until SIGINT/SIGTERM; in-flight requests finish first."""
    from churnwatch.infra.kafka.auth import client_options
    from churnwatch.infra.kafka.topics import ensure_topics

    if not settings.broker:
        raise ConfigError("churnwatch ingest needs CHURNWATCH_BROKER (e.g. kafka://127.0.0.1:9092)")
    if settings.ingest_tokens_file is None:
        raise ConfigError("churnwatch ingest needs CHURNWATCH_INGEST_TOKENS_FILE. Fix: point it "
                          'at a TOML file with [tokens] "<token>" = "<feed-name>"')
    from churnwatch.infra.runtime.logs import current_redactor

    redactor = current_redactor()
    tokens = TokenStore(settings.ingest_tokens_file,
                        on_tokens=None if redactor is None else redactor.add_all)
    names = TopicNames.of(settings)
    await ensure_topics(settings, (names.events, names.dlq))
    producer = KafkaIngestProducer(settings.bootstrap, settings.partitions, topic=names.events,
                                   client_options=client_options(settings))
    await producer.start()
    runner = web.AppRunner(create_ingest_app(settings, producer, tokens), access_log=None,
                           shutdown_timeout=settings.ingest_produce_timeout_s,
                           **runner_options())
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.ingest_host, settings.ingest_port)
        await site.start()
        host, port = runner.addresses[0][:2]
        log.info("ingest on http://%s:%d/v1/events (feeds: %d, partitions: %d)", host, port,
                 len(tokens.feeds), producer.partitions)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()
