"""Broker reset detection: a broker that lost its data is reported, never silently consumed.

The embedded broker keeps everything in memory: a restart empties every topic and forgets
every committed offset, and a Kafka consumer then quietly starts over from the earliest (or
latest) offset. A real cluster can lose data the same way after an unclean leader election
or a deleted and recreated topic. So the worker remembers, in Redis (it survives a worker
restart), the highest end offset (high watermark) of every partition of ``churn.events`` and
the highest offset its group committed, and checks them at startup and every few seconds:

- the topic is gone, or has fewer partitions;
- a partition's high watermark went backwards;
- the group's committed offset of a partition went backwards or vanished.

Any of these raises :class:`BrokerResetError`. The worker logs it at ERROR, sets
``churnwatch_broker_reset_detected`` to 1, stops consuming and exits with code 3; it keeps
refusing to start until an operator runs ``churnwatch broker accept-reset`` (after deciding
what to replay), which forgets the remembered offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from churnwatch.core.errors import ChurnwatchError
from churnwatch.infra.kafka.offsets import high_watermarks

EXIT_CODE = 3

# raise every stored field to max(stored, new); one round trip, safe with several workers
_RAISE = """
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


class BrokerResetError(ChurnwatchError):
    """The broker lost data the worker had seen; the message says what and how to proceed."""


@dataclass(frozen=True)
class Offsets:
    """What the broker reports for one topic and consumer group, per partition."""

    ends: dict[int, int] = field(default_factory=dict)  # high watermarks; empty = no topic
    committed: dict[int, int] = field(default_factory=dict)  # partitions with a commit only

    def fields(self) -> dict[str, int]:
        return {**{f"end:{p}": v for p, v in self.ends.items()},
                **{f"committed:{p}": v for p, v in self.committed.items()}}

    @classmethod
    def from_fields(cls, raw: dict[bytes, bytes]) -> Offsets:
        ends, committed = {}, {}
        for name, value in raw.items():
            kind, _, partition = name.decode().partition(":")
            (ends if kind == "end" else committed)[int(partition)] = int(value)
        return cls(ends, committed)


def regressions(seen: Offsets, now: Offsets, topic: str, group: str) -> list[str]:
    """What went backwards from ``seen`` to ``now`` (empty: nothing)."""
    if seen.ends and not now.ends:
        return [f"topic {topic} is gone (it had {len(seen.ends)} partitions)"]
    out = []
    for p, end in sorted(seen.ends.items()):
        if p not in now.ends:
            out.append(f"{topic} partition {p} is gone")
        elif now.ends[p] < end:
            out.append(f"{topic} partition {p} ends at offset {now.ends[p]}, "
                       f"it had reached {end}")
    for p, offset in sorted(seen.committed.items()):
        if p not in now.committed:
            out.append(f"group {group} has no committed offset on {topic} partition {p} "
                       f"any more (it had committed {offset})")
        elif now.committed[p] < offset:
            out.append(f"group {group} committed offset on {topic} partition {p} went back "
                       f"from {offset} to {now.committed[p]}")
    return out


class BrokerGuard:
    """Checks the broker against the offsets remembered in Redis, then remembers the new ones.

    ``redis`` is an asyncio Redis client; ``client_options`` are extra aiokafka client
    settings (security, see ``churnwatch.infra.kafka.auth.client_options``).
    """

    def __init__(self, redis: Any, bootstrap: str, group: str, topic: str,
                 key: str, client_options: dict[str, Any] | None = None) -> None:
        self.redis = redis
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.key = key
        self.client_options = client_options or {}

    async def observe(self) -> Offsets:
        """The topic's high watermarks and the group's committed offsets, now."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False, **self.client_options)
        try:
            await consumer.start()
            await consumer.topics()  # all topics' metadata: never auto-creates one
            if not consumer.partitions_for_topic(self.topic):
                return Offsets()
            ends = {tp.partition: end
                    for tp, end in (await high_watermarks(consumer, self.topic)).items()}
            committed = {}
            for p in ends:
                offset = await consumer.committed(TopicPartition(self.topic, p))
                if offset is not None:
                    committed[p] = offset
            return Offsets(ends, committed)
        finally:
            await consumer.stop()

    async def remembered(self) -> Offsets:
        return Offsets.from_fields(await self.redis.hgetall(self.key))

    async def check(self) -> Offsets:
        """Raise :class:`BrokerResetError` if anything went backwards, else remember ``now``."""
        seen = await self.remembered()
        now = await self.observe()
        problems = regressions(seen, now, self.topic, self.group)
        if problems:
            raise BrokerResetError(
                "the broker lost data this worker had already seen (restarted memory-only "
                "broker, deleted topic or unclean failover): " + "; ".join(problems) +
                ". Refusing to consume from reset offsets. Fix: restore the broker's data, or "
                "decide what to replay and then run `churnwatch broker accept-reset`.")
        flat = [str(x) for kv in now.fields().items() for x in kv]
        if flat:
            await self.redis.eval(_RAISE, 1, self.key, *flat)
        return now

    async def accept_reset(self) -> None:
        """Forget the remembered offsets (an operator accepted the broker's current state)."""
        await self.redis.delete(self.key)


async def check_at_startup(settings: Any) -> None:
    """One check before the worker consumes anything (raises :class:`BrokerResetError`)."""
    from churnwatch.core.keys import Keys
    from churnwatch.infra.kafka.auth import client_options
    from churnwatch.infra.kafka.topics import TopicNames
    from churnwatch.infra.redis.connect import connect

    redis = connect(settings)  # a single Redis or a Redis Cluster
    try:
        await BrokerGuard(redis, settings.bootstrap, settings.app_id,
                          TopicNames.of(settings).events, Keys().broker_offsets(settings.app_id),
                          client_options(settings)).check()
    finally:
        await redis.aclose()
