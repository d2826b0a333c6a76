"""A third-party producer of churn.events: confluent-kafka (librdkafka), one event per message.

What an operator's own systems would write, as opposed to churnwatch's packer
(:class:`churnwatch.infra.kafka.produce.EventProducer`, many events per message): each event is one Kafka
message (its JSON object), keyed by its subscriber id, partitioned by librdkafka's partitioner
(default ``consistent_random``: CRC32 of the key, random for unkeyed messages; not the Java
client's murmur2 that churnwatch's own producer uses), optionally compressed.

Used by ``benchmarks/bench_intake.py`` and by the tests (``tests/support/producers.py``). Needs the
``confluent-kafka`` package (optional dependency groups ``bench`` and ``test``); librdkafka
2.16 talks to the embedded Tansu broker, much older ones do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import orjson

from churnwatch.core.errors import ChurnwatchError, EventError
from churnwatch.core.events import normalise_subscriber

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
#: librdkafka's partitioners (``partitioner`` property); ``consistent_random`` is its default
PARTITIONERS = ("consistent_random", "consistent", "random", "murmur2", "murmur2_random",
                "fnv1a", "fnv1a_random")
KeyMode = Literal["normalised", "raw", "none"]


class ProduceError(ChurnwatchError):
    """A message could not be delivered (or the flush timed out)."""


def subscriber_key(event: dict[str, Any] | bytes, mode: KeyMode = "normalised") -> bytes | None:
    """The message key of one event: its subscriber id as written (``raw``), in canonical form
    (``normalised``: ``+44 7900-000001`` and ``00447900000001`` are one key, so one
    partition), or None (``none``, or an event without a usable subscriber id)."""
    if mode == "none":
        return None
    try:
        doc = orjson.loads(event) if isinstance(event, (bytes, bytearray)) else event
        sid = doc["subscriber_id"]
        if not isinstance(sid, str):
            return None
        return (sid if mode == "raw" else normalise_subscriber(sid)).encode()
    except (orjson.JSONDecodeError, EventError, KeyError, TypeError):
        return None


@dataclass
class Delivery:
    """What one :func:`produce` call delivered."""

    messages: int = 0
    seconds: float = 0.0
    per_partition: dict[int, int] = field(default_factory=dict)
    #: per partition, the offset after the last message delivered (its end, if this producer
    #: was its only writer): read from delivery reports, so no fetch (nor codec) is needed
    ends: dict[int, int] = field(default_factory=dict)
    #: (partition, offset) of each message in input order (only with ``offsets=True``)
    offsets: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def producer_config(bootstrap: str, compression: str = "none",
                    partitioner: str = "consistent_random", **extra: Any) -> dict[str, Any]:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    if partitioner not in PARTITIONERS:
        raise ValueError(f"partitioner must be one of {PARTITIONERS}, not {partitioner!r}")
    return {"bootstrap.servers": bootstrap, "compression.type": compression,
            "partitioner": partitioner, "acks": "all", "linger.ms": 5,
            "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1 << 20, "client.id": "churnwatch-standard-producer",
            **extra}


def produce(bootstrap: str, topic: str, events: Iterable[dict[str, Any] | bytes], *,
            compression: str = "none", partitioner: str = "consistent_random",
            key: KeyMode = "normalised", offsets: bool = False, timeout_s: float = 120.0,
            progress: Callable[[int], None] | None = None, partition: int | None = None,
            **config: Any) -> Delivery:
    """Produce ``events`` (dicts, or already encoded JSON objects as bytes) to ``topic``, one
    per message, keyed per ``key``; flush, and raise :class:`ProduceError` if any message was
    not delivered. ``partition``: every message to that partition (a producer with a
    partitioner of its own), instead of the ``partitioner``'s choice. ``config`` adds
    librdkafka properties (dots as underscores are *not* translated: pass
    ``**{"message.max.bytes": ...}``)."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(producer_config(bootstrap, compression, partitioner, **config))
    out = Delivery()
    slots: list[tuple[int, int]] = out.offsets

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            out.errors.append(str(err))
            return
        p = msg.partition()
        out.per_partition[p] = out.per_partition.get(p, 0) + 1
        if msg.offset() >= out.ends.get(p, 0):
            out.ends[p] = msg.offset() + 1

    def delivered_at(i: int, err: Any, msg: Any) -> None:
        delivered(err, msg)
        if err is None:
            slots[i] = (msg.partition(), msg.offset())

    where = {} if partition is None else {"partition": partition}
    t0 = time.perf_counter()
    n = 0
    try:
        for n, event in enumerate(events, 1):
            value = bytes(event) if isinstance(event, (bytes, bytearray)) else orjson.dumps(event)
            k = subscriber_key(event, key)
            if offsets:
                slots.append((-1, -1))
                callback = partial(delivered_at, n - 1)
            else:
                callback = delivered
            while True:
                try:
                    producer.produce(topic, value, k, on_delivery=callback, **where)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
            if n % 10_000 == 0:
                producer.poll(0)
                if progress:
                    progress(10_000)
        left = producer.flush(timeout_s)
    except KafkaException as exc:
        raise ProduceError(f"producing to {topic} on {bootstrap} failed: {exc}") from exc
    if progress and n % 10_000:
        progress(n % 10_000)
    out.messages, out.seconds = n, time.perf_counter() - t0
    if left:
        raise ProduceError(f"{left} of {n} messages still undelivered after {timeout_s:g} s "
                           f"(is the broker at {bootstrap} up?)")
    if out.errors:
        raise ProduceError(f"{len(out.errors)} of {n} messages not delivered to {topic}: "
                           f"{sorted(set(out.errors))[:3]}")
    return out


def produce_events(bootstrap: str, topic: str, events: Sequence[dict[str, Any]], *,
                   compression: str = "none", partitioner: str = "consistent_random",
                   keyed: bool = True, key: KeyMode = "normalised",
                   timeout_s: float = 60.0) -> list[tuple[int, int]]:
    """One event dict per message; returns each event's (partition, offset), in order."""
    return produce(bootstrap, topic, events, compression=compression, partitioner=partitioner,
                   key=key if keyed else "none", offsets=True, timeout_s=timeout_s).offsets
