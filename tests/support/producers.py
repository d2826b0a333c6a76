"""A standard Kafka producer for stream-path tests: confluent-kafka (librdkafka), one event per
message, as an operator's own systems would write churn.events (not churnwatch's packer).

    offsets = produce_events(broker.bootstrap, "churn.events", events, compression="lz4")

- ``compression``: none, gzip, snappy, lz4 or zstd (``compression.type``);
- ``partitioner``: librdkafka's, default ``consistent_random`` (CRC32 of the key; random for
  unkeyed messages), or murmur2 (the Java client's), fnv1a, ...;
- keyed by the event's subscriber id, in canonical form by default (``key="raw"``: as written;
  ``keyed=False``: no key); events without a usable id go unkeyed;
- flushes, raises :class:`ProduceError` if any message was not delivered, and returns each
  event's ``(partition, offset)`` in input order.

Events may be dicts (encoded with orjson) or already encoded JSON bytes. The implementation is
:mod:`benchmarks.standard_producer` (shared with ``benchmarks/bench_intake.py``).
"""

from benchmarks.standard_producer import (
                                          COMPRESSIONS,
                                          PARTITIONERS,
                                          Delivery,
                                          ProduceError,
                                          produce,
                                          produce_events,
                                          subscriber_key,
)

__all__ = ["COMPRESSIONS", "PARTITIONERS", "Delivery", "ProduceError", "produce",
           "produce_events", "subscriber_key"]
