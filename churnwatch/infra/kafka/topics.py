"""Create churnwatch's topics on any Kafka-protocol broker and check their partition counts."""

from __future__ import annotations

import asyncio

from churnwatch.core.errors import ChurnwatchError


class TopicsError(ChurnwatchError):
    """The broker refused a topic, or an existing topic has another partition count."""


async def create_topics(bootstrap: str, topics: dict[str, int], replication: int = 1, timeout: float = 10.0) -> None:
    """Create ``topics`` (name -> partitions), tolerating existing ones, then verify partition counts."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, for_code

    if bad := {t: p for t, p in topics.items() if p < 1}:
        raise TopicsError(f"partition counts must be >= 1: {bad}")  # Tansu itself accepts 0
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(t, p, replication) for t, p in topics.items()])
        for name, code, *rest in response.topic_errors:
            if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                raise TopicsError(f"CreateTopics {name!r} failed: {for_code(code).__name__} {rest}")
        loop = asyncio.get_running_loop()
        deadline, found = loop.time() + timeout, {}
        while True:
            try:  # describe only existing topics: Tansu auto-creates (4 partitions) on metadata requests
                existing = sorted(set(await admin.list_topics()) & set(topics))
                described = await admin.describe_topics(existing) if existing else []
                found = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
            except KafkaError:
                pass
            if not (wrong := {t: {"want": p, "have": found.get(t)} for t, p in topics.items() if found.get(t) != p}):
                return
            if loop.time() > deadline:
                raise TopicsError(f"topics on {bootstrap} do not match after {timeout:g}s: {wrong} "
                                           "(an existing topic keeps its partition count)")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
