"""Alert latency under a paced standard producer (``bench_intake --latency-s``).

After a worker drained the backlog, the same worker is started again and offered a fixed
load (half its measured rate, by default) by confluent-kafka: one event per message, keyed by
subscriber, with the run's compression and partitioner, sent on a 10 ms tick. The events
continue the feed's subscribers' timelines after its last day.

The load is offered twice: a warm-up (``--latency-warmup-s``) that takes the restarted
worker through its start (group join, assignment, the first reads of every subscriber's
state, the silence sweep the feed's jump in time starts), then, once the worker has committed
all of it, the measured window. The warm-up's alerts are reported apart: they say what a
restart costs, not what the worker does at that load.

Two latencies per alert, both from ``ingested_at`` (the record's timestamp, which librdkafka
sets when the message is produced, so the producer's linger and the broker round trip count):

- **detection**: to ``detected_at``, the worker's clock when it decided the alert;
- **delivery**: to the timestamp of the alert's record on the alerts topic, set by the
  worker's producer when it sends the alert, after the batch's states are stored in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from benchmarks.bench_e2e import percentiles_ms
from benchmarks.standard_producer import produce
from churnwatch.dev.simulate import SimConfig, Simulation

TICK_S = 0.01
EVENTS_PER_SUBSCRIBER_DAY = 2.1  # the simulator's mean (measured)
MIN_ALERTS = 20  # below this, the percentiles are called thin
_encode = msgspec.json.Encoder().encode


def continuation(base: SimConfig, need: int) -> list[bytes]:
    """At least ``need`` events (if the population makes that many in a year) of ``base``'s
    subscribers, from the first month start after ``base``'s last day."""
    days = min(365, max(30, -(-need // int(EVENTS_PER_SUBSCRIBER_DAY * base.subscribers))))
    after = base.start + timedelta(days=base.days)
    start = datetime(after.year + after.month // 12, after.month % 12 + 1, 1, tzinfo=UTC)
    sim = Simulation(SimConfig(subscribers=base.subscribers, days=days, seed=base.seed + 1000,
                               start=start))
    return [_encode(e) for e in sim.events()]


def paced(lines: Sequence[bytes], rate: float, seconds: float, clock: list[float]
          ) -> Iterator[bytes]:
    """``lines`` at ``rate`` per second for ``seconds``, a tick's worth at a time;
    ``clock`` gets the start and end times (``time.perf_counter``)."""
    t0 = time.perf_counter()
    clock[:] = [t0, t0]
    sent = 0
    tick = 0
    while sent < len(lines):
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        due = min(len(lines), int(rate * elapsed))
        while sent < due:
            yield lines[sent]
            sent += 1
        tick += 1
        time.sleep(max(0.0, t0 + tick * TICK_S - time.perf_counter()))
    clock[1] = time.perf_counter()


def offer(bootstrap: str, topic: str, lines: Sequence[bytes], rate: float, seconds: float, *,
          compression: str, partitioner: str) -> dict[str, Any]:
    """Produce ``lines`` at ``rate`` for ``seconds`` (one event per message); returns what was
    sent, the achieved rate and the wall-clock start in ms (alerts' ``ingested_at`` is later)."""
    started_ms = int(time.time() * 1000)
    clock: list[float] = []
    delivery = produce(bootstrap, topic, paced(lines, rate, seconds, clock),
                       compression=compression, partitioner=partitioner, key="normalised")
    window = clock[1] - clock[0] if clock else 0.0
    return {"offered_events_per_s": round(rate), "events": delivery.messages,
            "window_s": round(window, 2),
            "achieved_events_per_s": round(delivery.messages / window) if window else None,
            "started_ms": started_ms, "ended_ms": int(time.time() * 1000)}


@dataclass(frozen=True)
class Latencies:
    """Per alert on an event ingested in a window: detection and delivery latency (ms)."""

    detection: list[float]
    delivery: list[float]


def alert_latencies(bootstrap: str, topic: str, since_ms: int, until_ms: int | None = None
                    ) -> Latencies:
    """The latencies of the alerts on ``topic`` whose event was ingested in
    [``since_ms``, ``until_ms``): ``detected_at`` and the alert record's timestamp, each
    minus ``ingested_at``. Reads the topic from its start to its end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "churnwatch-bench-latency",
                         "enable.auto.commit": False})
    detection: list[float] = []
    delivery: list[float] = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                if msg.offset() + 1 >= ends[msg.partition()]:
                    left.discard(msg.partition())
                alert = orjson.loads(msg.value())
                ingested = alert.get("ingested_at")
                if not ingested or ingested < since_ms or (until_ms and ingested >= until_ms):
                    continue
                if alert.get("detected_at"):
                    detection.append(float(alert["detected_at"] - ingested))
                kind, sent_ms = msg.timestamp()
                if kind and sent_ms > 0:
                    delivery.append(float(sent_ms - ingested))
    finally:
        consumer.close()
    return Latencies(detection, delivery)


def summary(offered: dict[str, Any], measured: Latencies, warmup: dict[str, Any] | None = None,
            warmup_latencies: Latencies | None = None) -> dict[str, Any]:
    """The report's ``latency`` section."""
    out = {**{k: v for k, v in offered.items() if k not in ("started_ms", "ended_ms")},
           "alerts": len(measured.detection),
           "enough_alerts": len(measured.detection) >= MIN_ALERTS,
           "alert_latency_ms": percentiles_ms(measured.detection),
           "alert_delivery_latency_ms": percentiles_ms(measured.delivery),
           "alert_latency_basis": "detection: alerts' detected_at - ingested_at; delivery: the "
                                  "alert record's timestamp on the alerts topic - ingested_at "
                                  "(ingested_at = the event record's timestamp, set by "
                                  "librdkafka at produce time)"}
    if warmup is not None and warmup_latencies is not None:
        out["warmup"] = {"seconds": warmup["window_s"], "events": warmup["events"],
                         "alerts": len(warmup_latencies.detection),
                         "alert_latency_ms": percentiles_ms(warmup_latencies.detection),
                         "alert_delivery_latency_ms": percentiles_ms(warmup_latencies.delivery)}
    return out
