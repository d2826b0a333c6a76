"""Producing events to churn.events: many events per Kafka message, per-subscriber order kept.

The Faust consumer pays ~70 µs per Kafka *message* (docs/benchmarks.md), so producers pack up to
``per_message`` events of one partition into one JSON-array message. Each event goes to the
partition Kafka's default partitioner would choose for its normalised subscriber id, so
single-event producers keyed by subscriber and this packer agree on placement and order.
Lines that are not JSON objects travel alone so the worker dead-letters them by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from churnwatch.core.errors import EventError
from churnwatch.core.events import normalise_subscriber


@lru_cache(maxsize=1 << 20)
def partition_for(subscriber_id: str, partitions: int) -> int:
    """Kafka's default partition for a (normalised) subscriber id key."""
    return (murmur2(subscriber_id.encode()) & 0x7FFFFFFF) % partitions


def route(raw: bytes, partitions: int) -> int | None:
    """Partition of one raw event line, or None if it cannot be routed (sent alone)."""
    try:
        doc = orjson.loads(raw)
        return partition_for(normalise_subscriber(doc["subscriber_id"]), partitions)
    except (orjson.JSONDecodeError, EventError, KeyError, TypeError, AttributeError):
        return None


class EventProducer:
    """Packs raw JSON events into per-partition array messages and sends them with acks=all."""

    def __init__(self, bootstrap: str, topic: str, partitions: int,
                 per_message: int = 500, client_options: dict[str, Any] | None = None) -> None:
        """``client_options``: the security settings every Kafka client gets
        (``churnwatch.infra.kafka.auth.client_options``)."""
        self.bootstrap = bootstrap
        self.client_options = client_options or {}
        self.topic = topic
        self.partitions = partitions
        self.per_message = per_message
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future] = []

    async def __aenter__(self) -> EventProducer:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          linger_ms=5, max_batch_size=1 << 20,
                                          max_request_size=8 << 20, compression_type=None,
                                          **self.client_options)
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._producer is not None
        await self.flush()
        await self._producer.stop()

    async def _send(self, partition: int, value: bytes) -> None:
        assert self._producer is not None
        self._pending.append(await self._producer.send(self.topic, value, partition=partition))
        if len(self._pending) >= 256:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every message sent so far is acknowledged by the broker."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def send_lines(self, lines: Iterable[bytes],
                         progress: Callable[[int], None] | None = None) -> int:
        """Send raw JSON event lines; returns how many were sent."""
        buffers: list[list[bytes]] = [[] for _ in range(self.partitions)]
        sent = 0
        for raw in lines:
            raw = raw.strip()
            if not raw:
                continue
            part = route(raw, self.partitions)
            sent += 1
            if part is None:
                await self._send(sent % self.partitions, raw)
                continue
            buf = buffers[part]
            buf.append(raw)
            if len(buf) >= self.per_message:
                await self._send(part, b"[" + b",".join(buf) + b"]")
                if progress:
                    progress(len(buf))
                buf.clear()
        for part, buf in enumerate(buffers):
            if buf:
                await self._send(part, b"[" + b",".join(buf) + b"]")
                if progress:
                    progress(len(buf))
        await self.flush()
        return sent

    async def send_events(self, events: Iterable[dict],
                          progress: Callable[[int], None] | None = None) -> int:
        """Send event dicts (encoded with orjson)."""
        return await self.send_lines((orjson.dumps(ev) for ev in events), progress)
