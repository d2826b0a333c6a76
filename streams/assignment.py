"""This worker's partitions: who owns them (fencing), what was applied (replays) and which
forwarded events arrived home.

Every assignment claims its partitions (``streams.ownership``), then reads the offsets the
batches stored with their states: records before a partition's applied offset are replays,
skipped and counted as duplicates, never re-scored. On home partitions it also reads the
highest source positions of the forwarded events applied (``streams.repartition``). A batch
taken while a rebalance is under way waits on :attr:`Assignment.ready`.

Events that arrive away from their home partition are applied here, not forwarded, when this
worker owns the home partition and has applied its forwarded events up to the end the
internal topic had after the claim (:meth:`Assignment.home_ends`, read by the worker): what a
former owner forwarded is applied first, in its order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any

from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from streams.commit import AppliedOffsets
from streams.ownership import Partition, PartitionOwners, WriteFence, partition_field
from streams.records import Record, offset_of, topic_partition
from streams.repartition import Forward, Homes, Seen, Split

__all__ = ["UNKNOWN_OFFSET", "Assignment"]

UNKNOWN_OFFSET = 1 << 62  # a forward whose offset the publisher did not give: never caught up


class Assignment:
    """The partitions' claims, applied offsets and forwarded positions, in Redis (``redis``).

    Without :meth:`own` (no consumer group: tests, benchmarks) nothing is claimed or stored
    and every record is applied."""

    def __init__(self, redis: Any, keys: Keys = Keys(), homes: Homes | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.homes = homes  # forwards events away from home (None: applies all)
        # per (topic, partition): the offset after the last record applied, as stored with the
        # states; records before it are replays, skipped
        self.applied: dict[Partition, int] = {}
        self.applied_key: str | None = None  # the Redis hash of applied offsets (None: not kept)
        self.seen: Seen = {}  # of home partitions: the forwarded events applied (repartition)
        self.owners: PartitionOwners | None = None  # claims on partitions (None: not fenced)
        self.fence: WriteFence | None = None  # orders and fences the writes (single Redis)
        # per home partition number: the internal topic's end after this assignment's claim
        # (None until the worker read it); caught up past it, away events are applied here
        self.ends: dict[int, int] | None = None
        self._here: frozenset[int] = frozenset()
        # this worker's own forwards, per home partition: batches under way that forward to
        # it, and the internal topic's offset after the last one published (kept across
        # assignments: a batch of an earlier one may still be publishing)
        self.forwarding: Counter[int] = Counter()
        self.forwarded_to: dict[int, int] = {}
        self.count = 0  # assignments so far
        self.reassigned = asyncio.Event()  # set, then replaced, by each assignment
        # set while the claims and applied offsets are loaded (after own(): from the first
        # assignment on; cleared while a rebalance is under way)
        self.ready = asyncio.Event()
        self.ready.set()

    def own(self, group: str, member: str) -> None:
        """Consume as ``member`` of the consumer group ``group``: store each partition's
        applied offset with the batch's states and fence the partitions' states against
        their former owners (``streams.ownership``)."""
        self.applied_key = self.keys.applied_offsets(group)
        self.owners = PartitionOwners(self.redis, self.keys.partition_owners(group), member)
        self.fence = WriteFence(self.owners, self.applied_key)
        self.ready.clear()  # until the first assignment

    def revoking(self) -> None:
        """A rebalance began: no batch is started until :meth:`assigned` is done."""
        if self.owners is not None:
            self.ready.clear()

    async def assigned(self, partitions: Sequence[Partition], retrying: Any) -> None:
        """Claim ``partitions``, then read their applied offsets (in that order: a former
        owner's commit either lands before the claim, and is read, or is refused);
        ``retrying``: the tenacity retries of a Redis outage."""
        async for attempt in retrying:
            with attempt:
                if self.owners is not None:
                    await self.owners.claim(partitions)
                await self._load(partitions)
        self.ends, self._here = None, frozenset()
        self.count += 1
        self.reassigned.set()
        self.reassigned = asyncio.Event()
        self.ready.set()

    async def _load(self, partitions: Sequence[Partition]) -> None:
        if self.applied_key is None or not partitions:
            self.applied, self.seen = {}, {}
            return
        keys = self.homes.seen_keys(partitions) if self.homes is not None else []
        fields = [partition_field(tp) for tp in partitions]
        fields += [self.homes.seen_field(key) for key in keys] if self.homes else []
        values = await self.redis.hmget(self.applied_key, fields)
        n = len(partitions)
        self.applied = {tp: int(v) for tp, v in zip(partitions, values[:n]) if v is not None}
        self.seen = {key: int(v) for key, v in zip(keys, values[n:]) if v is not None}

    def home_partitions(self) -> list[int]:
        """The partition numbers of the internal topic (``homes.topic``) this worker owns."""
        if self.homes is None or self.owners is None:
            return []
        return sorted(p for t, p in self.owners.tokens if t == self.homes.topic)

    def home_ends(self, ends: dict[int, int], assignment: int) -> None:
        """The internal topic's end offsets read after assignment number ``assignment``'s
        claim (ignored if another assignment came since)."""
        if assignment == self.count:
            self.ends = dict(ends)

    def route(self, events: list[Event], origins: list[int], records: Sequence[Record]) -> Split:
        """A batch's events split by :class:`~streams.repartition.Homes`: the replayed copies
        of forwarded events, those to apply here (at home, or away from a home partition in
        :meth:`here`) and the messages forwarding the others. Without homes: all kept."""
        if self.homes is None:
            return Split(events, origins, [], [], {}, frozenset())
        events, origins, again, seen = self.homes.replays(events, origins, records, self.seen)
        split = self.homes.split(events, origins, records, self.here(), {**self.seen, **seen})
        return split._replace(replayed=again + split.replayed,
                              advanced={**seen, **split.advanced})

    @contextmanager
    def forwarding_until(self, forwards: Sequence[Forward], sent: Mapping[int, int]
                         ) -> Iterator[Callable[[asyncio.Future[Any]], None]]:
        """While a batch that forwards ``forwards`` is under way, their home partitions are
        not :meth:`here`. Yields ``until``: call it with the batch's commit task, whose end
        ends the batch (else leaving the block does); ``sent``: what the commit published
        (:meth:`forwards_done`)."""
        homes = sorted({f.partition for f in forwards})
        self.forwarding.update(homes)
        handed: list[bool] = []

        def until(task: asyncio.Future[Any]) -> None:
            handed.append(True)
            task.add_done_callback(lambda _: self.forwards_done(homes, sent))

        try:
            yield until
        finally:
            if not handed:
                self.forwards_done(homes, sent)

    def forwards_done(self, partitions: Iterable[int], sent: Mapping[int, int]) -> None:
        """That batch is done; ``sent``: the offset after its last forward per partition
        (absent: nothing was published there)."""
        self.forwarding.subtract(partitions)
        for p, end in sent.items():
            self.forwarded_to[p] = max(self.forwarded_to.get(p, 0), end)

    def here(self) -> frozenset[int]:
        """The home partitions whose away events this worker applies where they arrive:
        owned, no batch of this worker forwarding to them, and their forwarded events
        applied up to :attr:`ends` and past this worker's own last forward. Once there, a
        partition stays until the next assignment (nothing is forwarded to it meanwhile)."""
        ends, homes = self.ends, self.homes
        if ends is None or homes is None or self.owners is None:
            return frozenset()
        if len(self._here) < len(ends):
            applied, topic = self.applied, homes.topic
            self._here = self._here | frozenset(
                p for p, end in ends.items()
                if (topic, p) in self.owners.tokens and self.forwarding[p] <= 0
                and applied.get((topic, p), 0) >= max(end, self.forwarded_to.get(p, 0)))
        return self._here

    def split_replays(self, records: Sequence[Record]) -> tuple[Sequence[Record], list[Record]]:
        """The records not applied yet, and the replays: records before their partition's
        applied offset (a re-read after a crash or a rebalance). Records of partitions this
        worker does not own (any more) are neither: they are left to their owner.

        A measured hot path: a batch holds runs of one partition's records, and a run wholly
        after (or before) its applied offset is taken whole."""
        applied = self.applied
        owned = self.owners.tokens if self.owners is not None else None
        if not applied and owned is None:
            return records, []
        fresh: list[Record] = []
        replayed: list[Record] = []
        for tp, records_of_tp in groupby(records, topic_partition):
            if owned is not None and tp not in owned:
                continue
            floor = applied.get(tp, -1)
            run = list(records_of_tp)
            if min(map(offset_of, run)) >= floor:
                fresh += run
            elif max(map(offset_of, run)) < floor:
                replayed += run
            else:
                for rec in run:
                    (replayed if rec.offset < floor else fresh).append(rec)
        return fresh, replayed

    def owned_of(self, partition: int) -> list[Partition]:
        """The owned partitions numbered ``partition`` (of every consumed topic)."""
        return [tp for tp in (self.owners.tokens if self.owners else ()) if tp[1] == partition]

    def offsets(self, applied: dict[Partition, int], seen: Seen) -> AppliedOffsets | None:
        """What a batch stores in the applied-offsets hash (nothing outside a group)."""
        if self.applied_key is None:
            return None
        fields = ({self.homes.seen_field(key): position for key, position in seen.items()}
                  if self.homes is not None else {})
        return AppliedOffsets(self.applied_key, applied, fields)
