"""Third-party producers for stream tests: confluent-kafka (librdkafka), as operators' feeds
use it: one JSON event per message, keyed by the producer's own subscriber id, compressed
with any codec, partitioned by librdkafka's default (CRC32) or another partitioner."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from confluent_kafka import Producer

from churnwatch.errors import EventError
from churnwatch.events import normalise_subscriber

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def key_of(line: bytes, normalised: bool = True) -> bytes | None:
    """The ``subscriber_id`` of a JSON event as its producer keys it: normalised (one
    subscriber, one key, whatever the format of the number) or raw. None when the line is not
    an object with a valid id: such a producer sends it unkeyed."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    sid = value.get("subscriber_id") if isinstance(value, dict) else None
    if not isinstance(sid, str):
        return None
    if normalised:
        try:
            sid = normalise_subscriber(sid)
        except EventError:
            return None
    return sid.encode()


def produce_single(bootstrap: str, topic: str, lines: Sequence[bytes], *,
                   compression: str = "lz4", partitioner: str = "consistent_random",
                   keyed: bool = True, linger_ms: int = 20) -> list[tuple[int, int]]:
    """Send each line as one message (acks=all, idempotent); returns each line's
    (partition, offset), in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": compression,
                         "partitioner": partitioner, "linger.ms": linger_ms,
                         "enable.idempotence": True, "acks": "all",
                         "broker.address.family": "v4"})
    placed: list[tuple[int, int] | None] = [None] * len(lines)
    errors: list[str] = []

    def report(i: int):  # type: ignore[no-untyped-def]
        def done(err, msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(str(err))
            else:
                placed[i] = (msg.partition(), msg.offset())
        return done

    for i, line in enumerate(lines):
        while True:
            try:
                producer.produce(topic, value=line, key=key_of(line) if keyed else None,
                                 on_delivery=report(i))
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0 and not errors, f"{left} undelivered, errors: {errors[:3]}"
    return [p for p in placed if p is not None]
