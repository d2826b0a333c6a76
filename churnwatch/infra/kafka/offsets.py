"""Consumer lag and topic sizes that stay right on the embedded broker.

Tansu (the embedded broker) answers ListOffsets(latest) with the *base* offset of the last
record batch plus one, not the true end; Fetch reports the true high watermark. So the end
of a partition is read as the high watermark of a fetch from just before that answer.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from churnwatch.infra.config import EVENTS_TOPIC, home_topic


async def high_watermarks(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """The true end offset of every partition of ``topic`` (consumer must be started)."""
    await consumer.topics()
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not parts:
        return {}
    listed = await consumer.end_offsets(parts)
    consumer.assign(parts)
    out: dict[TopicPartition, int] = {}
    for tp in parts:
        if listed[tp] == 0:
            out[tp] = 0
            continue
        consumer.seek(tp, listed[tp] - 1)
        while consumer.highwater(tp) is None:
            await consumer.getmany(tp, timeout_ms=200, max_records=1)
        out[tp] = max(listed[tp], consumer.highwater(tp) or 0)
    return out


async def end_offsets(bootstrap: str, topic: str,
                      options: dict[str, Any] | None = None) -> dict[int, int]:
    """The true end offset of every partition of ``topic``, by partition number."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **(options or {}))
    await consumer.start()
    try:
        return {tp.partition: end for tp, end in (await high_watermarks(consumer, topic)).items()}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topic: str,
                    options: dict[str, Any] | None = None) -> int:
    """Records of ``topic`` that ``group`` has not committed yet (``options``: the client
    security settings, ``churnwatch.infra.kafka.auth.client_options``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, **(options or {}))
    await consumer.start()
    try:
        ends = await high_watermarks(consumer, topic)
        lag = 0
        for tp, end in ends.items():
            lag += max(0, end - (await consumer.committed(tp) or 0))
        return lag
    finally:
        await consumer.stop()


async def worker_lag(bootstrap: str, group: str, options: dict[str, Any] | None = None,
                     prefix: str = "") -> int:
    """Records a worker group (``app_id``) has not committed yet: of ``churn.events`` and of
    the internal topic of events forwarded to their home partitions (``prefix``: the
    deployment's ``topic_prefix``)."""
    return (await group_lag(bootstrap, group, prefix + EVENTS_TOPIC, options)
            + await group_lag(bootstrap, group, prefix + home_topic(group), options))


async def topic_size(bootstrap: str, topic: str, options: dict[str, Any] | None = None) -> int:
    """Records currently in ``topic`` (nothing is ever deleted on the embedded broker)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **(options or {}))
    await consumer.start()
    try:
        ends = await high_watermarks(consumer, topic)
        begins = await consumer.beginning_offsets(list(ends))
        return sum(end - begins[tp] for tp, end in ends.items())
    finally:
        await consumer.stop()


async def group_members(bootstrap: str, group: str, options: dict[str, Any] | None = None) -> int:
    """Members of ``group`` once it is Stable (0 while it rebalances or is empty)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
        info = described[0].groups[0] if described and described[0].groups else None
        return len(info[5]) if info and info[2] == "Stable" else 0
    finally:
        await admin.close()
