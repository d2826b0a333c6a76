"""One micro-batch through the whole chain: decode → features → rules → model → alerts.

The pipeline knows nothing of Faust: it takes raw records with their Kafka coordinates and a
:class:`Publisher`, so it runs the same under the worker, in tests and in benchmarks.

Order of effects, and why nothing is lost or repeated:
1. stage features: read the states (from the worker's state cache, or Redis), compute the
   features and the new states in the worker (nothing written yet);
2. decide alerts in Python (rules kernel, model score, cooldowns, playbook), then resolve
   delayed labels on the subscribers' snapshot records (``online_models.labels``);
3. commit: append the resolved examples to the learner's stream, then store the new states
   (snapshot records included) and record decided alerts as pending, atomically (plus the
   silence index, in the same round trip), once the batch's dead letters (published as soon
   as they are known) are out. :meth:`Pipeline.start` returns once it is sent:
   the next batch stages on this one's states, pinned in the cache, while it lands
   (``features.commits.CommitChain``); commits land in order;
4. deliver: once the batch's commit landed and the previous batch's delivery is done,
   publish alerts and scores, then mark the alerts delivered. The next batch
   runs steps 1-3 meanwhile; its messages are acknowledged once its delivery is done.
Redis errors in steps 1-2 retry the batch from step 1 (nothing was written); in step 3 they
re-send the same writes until they land (each is idempotent). A replay after a crash
finds its events already applied (duplicates) and re-sends their still-pending alerts; a
crash between the examples' append and the commit re-appends the same example ids, which
the learner drops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from tenacity import AsyncRetrying

from alerting.alert import Alert, alert_marks
from alerting.allocate import Allocator
from alerting.decide import Deciders, Decision, decide_alerts
from alerting.effect_store import EffectLedger
from alerting.holdout import Holdout
from alerting.ledger import AlertLedger
from alerting.outcomes import OutcomeTracker
from alerting.playbook import Playbook
from alerting.policy import ContactPolicy
from alerting.risk import RiskHistory
from alerting.storm import StormGuard, released_copy
from churnwatch.core.errors import FencedError
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.writes import Write
from churnwatch.infra.runtime.failpoints import failpoint
from churnwatch.infra.runtime.metrics import Metrics
from features.commits import CommitChain
from features.silence import SilenceIndex
from features.store import BatchFeatures, FeatureStore
from online_models.labels import resolve_batch, resolve_sweep
from online_models.learner import example_writes
from online_models.model import ChurnModel
from online_models.snapshots import Example, LabelPolicy
from rules.engine import CompiledRuleset
from streams.accounting import (
    count_cache,
    count_dropped_attrs,
    count_labels,
    count_replays,
)
from streams.assignment import UNKNOWN_OFFSET, Assignment
from streams.commit import AppliedOffsets, BatchCommit, is_fenced, refusal
from streams.delivery import BatchResult, Committed, Delivery, Publisher
from streams.intake import (
    activity,
    count_outcomes,
    decode_records,
    future_letters,
    late_letters,
)
from streams.records import Record, next_offsets, oldest_timestamp, timestamp_of
from streams.repartition import Forward, Seen
from streams.retrying import redis_retries
from streams.side_writes import SideWrites

log = logging.getLogger("churnwatch.pipeline")


class Pipeline:
    """Runs micro-batches and silence sweeps, one at a time; collaborators are passed in."""

    def __init__(self, store: FeatureStore, ledger: AlertLedger, rules: CompiledRuleset,
                 model: ChurnModel, playbook: Playbook, metrics: Metrics,
                 silence: SilenceIndex | None = None, policy: ContactPolicy = ContactPolicy(),
                 clock: Callable[[], float] = time.time, labels: LabelPolicy = LabelPolicy(),
                 holdout: Holdout = Holdout(), risk: RiskHistory | None = None, *,
                 partitions: Assignment | None = None, storm: StormGuard | None = None,
                 do_not_contact: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.ledger = ledger
        self.rules = rules
        self.model = model
        self.playbook = playbook
        self.metrics = metrics
        self.silence = silence or SilenceIndex(store.config.keys)
        self.policy = policy
        self.do_not_contact = do_not_contact
        self.storm = storm or StormGuard()
        self.labels = labels
        self.holdout = holdout
        self.writes = SideWrites(store, self.silence)
        self.outcomes = OutcomeTracker(store.redis, store.config.keys, metrics.registry)
        self.effects = EffectLedger(store.redis, store.config.keys, playbook.effect,
                                    metrics.registry)
        self.clock = clock
        self.partitions = partitions or Assignment(store.redis, store.config.keys)
        self.homes = self.partitions.homes
        self.risk = risk or RiskHistory(store.redis, store.config.keys, cap=0)
        self._lock = asyncio.Lock()  # one batch or sweep processed at a time
        self.delivery = Delivery(ledger, self.outcomes, metrics, lambda: self.rules.ruleset,
                                 self._retrying, clock)
        self.commits = CommitChain(store)  # a batch's commit lands while the next one stages
        metrics.set_version(metrics.ruleset, rules.version)
        metrics.set_version(metrics.model, model.version)

    def _deciders(self, rules: CompiledRuleset) -> Deciders:
        return Deciders(rules, self.model, self.playbook, self.policy, self.do_not_contact,
                        self.storm, self.holdout,
                        Allocator(self.playbook.effect, self.playbook.groups,
                                  self.effects.snapshot))

    def switch_rules(self, rules: CompiledRuleset) -> None:
        """Use another compiled ruleset from the next batch on."""
        old = self.rules.version
        self.rules = rules
        self.metrics.set_version(self.metrics.ruleset, rules.version, old)

    def switch_model(self, model: ChurnModel) -> None:
        """Score with another model version from the next batch on."""
        old = self.model.version
        self.model = model
        self.metrics.set_version(self.metrics.model, model.version, old)

    def revoking(self) -> None:
        """A rebalance began: no batch is started until :meth:`assigned` is done."""
        self.partitions.revoking()

    async def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """After an assignment: claim ``partitions`` and read their applied offsets; the
        state cache is cleared (another worker may have written these subscribers)."""
        self.store.cache.clear()
        if self.commits.failure is not None:  # e.g. fenced: those batches are read again
            self.commits = CommitChain(self.store)
        await self.partitions.assigned(partitions, self._retrying("assign"))

    async def run(self, records: Sequence[Record], publisher: Publisher) -> BatchResult:
        """Process and publish one batch; returns only when every effect is durable.
        The whole batch is decided by the ruleset active when it starts."""
        return await (await self.start(records, publisher))

    async def start(self, records: Sequence[Record],
                    publisher: Publisher) -> asyncio.Future[BatchResult]:
        """Process one batch up to its commit (states and pending alerts stored) and return
        its delivery: a task publishing its outputs once every earlier batch's are out. The
        next batch can be processed meanwhile; acknowledge this batch's messages only when
        its delivery is done (a crash before that replays it, and the replay re-sends its
        still-pending alerts)."""
        async with self._lock:
            committed = await self._process(records, publisher)
            return self.delivery.after_commit(committed, publisher)

    async def _process(self, records: Sequence[Record], publisher: Publisher) -> Committed:
        result = BatchResult()
        rules = self.rules
        stage = self.metrics.stage_seconds
        started = time.perf_counter()
        oldest = oldest_timestamp(records)
        if oldest is not None:
            self.metrics.batch_wait.observe(max(0.0, self.clock() - oldest / 1000))
        fresh, replayed = self.partitions.split_replays(records)
        events, origins, result.dead_letters = decode_records(fresh)
        routed = self.partitions.route(events, origins, fresh)  # (streams/repartition.py)
        events, origins, forwards = routed.kept, routed.origins, routed.forwards
        self.metrics.away_here.inc(routed.here)
        events, origins, ahead = future_letters(
            events, origins, fresh, int(self.clock() * 1000) + self.store.config.future_ms)
        result.dead_letters += ahead
        self.metrics.batch_events.observe(len(events))
        stage.labels("decode").observe(time.perf_counter() - started)
        # a turn for the deliveries under way: each of their awaits would otherwise wait for
        # the whole of this batch's processing (tens of ms of CPU at thousands of events)
        await asyncio.sleep(0)
        if self.commits.failure is not None:
            if is_fenced(self.commits.failure):  # until the next assignment re-reads them
                raise FencedError("an earlier batch was fenced; waiting for the rebalance")
            if (refused := refusal(self.commits.failure)) is not None:
                raise refused  # no later batch may land: the worker stops (streams/batch_loop)
            # its batches were dead-lettered (streams/batch_loop.py)
            log.warning("a batch commit failed; the next batches start again from Redis")
            self.commits = CommitChain(self.store)
        async for attempt in self._retrying("batch"):
            with attempt:
                await self.commits.ready()
                await self.effects.refresh()  # the ledger the allocator decides on
                t0 = time.perf_counter()
                staged = await self.store.stage(events)
                t1 = time.perf_counter()
                await asyncio.sleep(0)
                rows = staged.rows.tolist()
                applied_events = list(map(events.__getitem__, rows))  # (C speed)
                decision = decide_alerts(
                    self._deciders(rules), applied_events, staged.matrix,
                    staged.attrs, staged.ledgers,
                    list(map(timestamp_of, map(fresh.__getitem__,
                                               map(origins.__getitem__, rows)))),
                    int(self.clock() * 1000), publisher.wants_scores)
                t_labels = time.perf_counter()
                await asyncio.sleep(0)
                resolved = resolve_batch(self.labels, events, staged,
                                         alert_marks(decision.alerts))
                t2 = time.perf_counter()
                await asyncio.sleep(0)
                stage.labels("features").observe(t1 - t0)
                stage.labels("decide").observe(t_labels - t1)
                stage.labels("labels").observe(t2 - t_labels)
        active, gone = activity(origins, fresh, staged,
                                self.homes.home if self.homes is not None else None)
        result.dead_letters += late_letters(events, origins, fresh, staged.status)
        # dead letters go out now, while the batch waits for its turn to commit; the commit
        # waits for them before its Redis round trip (durable before the batch is applied)
        lettered = _started(publisher.dead_letters(
            [msgspec.json.encode(d) for d in result.dead_letters])) \
            if result.dead_letters else None
        applied = next_offsets(fresh)
        self.partitions.applied.update(applied)
        self.partitions.seen.update(routed.advanced)
        effects = self.effects.batch_writes(decision.alerts, decision.payloads,
                                            applied_events)
        sent: dict[int, int] = {}  # per home partition: the offset after its last forward
        with self.partitions.forwarding_until(forwards, sent) as until:
            landed = await self.commits.submit(
                staged, decision.entries,
                lambda: self._commit(staged, decision, resolved.examples, active, gone,
                                     lettered, forwards, applied, routed.advanced, publisher,
                                     effects, routed.borrowed, sent))
            until(landed)
        result.outcomes.update(count_outcomes(self.metrics, events, staged.status,
                                              result.dead_letters))
        replays = (decode_records(replayed)[0] if replayed else []) + routed.replayed
        if replays:  # applied before: counted as duplicates, their undelivered alerts re-sent
            count_replays(self.metrics, replays)
            result.outcomes["duplicate"] += len(replays)
            staged.pending_alerts.extend(await self.store.pending_alerts(replays))
        count_cache(self.metrics, self.store.cache)
        count_dropped_attrs(self.metrics, staged)
        count_labels(self.metrics, resolved)
        for raw in staged.pending_alerts:  # replayed duplicates whose alerts were not delivered
            alert = msgspec.json.decode(raw, type=Alert)
            if self.delivery.under_way(alert):
                continue  # an earlier batch's delivery, still under way, sends it
            decision.alerts.append(alert)
            decision.payloads.append(raw)
            result.replayed_alerts += 1
        self.storm.commit(decision.storm_counts)
        outcomes = [ev for ev in applied_events if ev.type == "outcome"]
        return Committed(records, result, decision, outcomes, started, landed)

    async def _commit(self, staged: BatchFeatures, decision: Decision, examples: list[Example],
                      active: dict[int, dict[str, int]], gone: dict[int, list[str]],
                      lettered: asyncio.Future[None] | None, forwards: list[Forward],
                      applied: dict[tuple[str, int], int], seen: Seen,
                      publisher: Publisher,
                      effects: Callable[[], Awaitable[list[Write]]] | None,
                      borrowed: frozenset[int], sent: dict[int, int]) -> None:
        """Store a batch's effects: its dead letters (``lettered``, under way since the batch
        was processed) and the events it forwards to their home partitions are published
        first (a crash before the rest publishes them again: at least once; dead letters by
        their coordinates, events by their ids), then one Redis round
        trip: the resolved examples (a crash before the rest re-appends the same ids, which
        the learner drops), then the new states with the decided alerts as pending, the
        partitions' applied offsets, the silence index, storm-held alerts, risk history and
        expiries. Redis errors re-send the same writes until they land (the next batch is
        staged on them meanwhile, see ``features.commits``)."""
        t0 = time.perf_counter()
        if lettered is not None:
            await lettered
        if forwards:
            assert self.homes is not None
            # where they land is unknown until the broker says (a test publisher does not)
            sent.update(dict.fromkeys({f.partition for f in forwards}, UNKNOWN_OFFSET))
            ends = await publisher.forward(self.homes.topic, forwards) or {}
            sent.update({p: ends.get(p, UNKNOWN_OFFSET) for p in sent})
            self.metrics.forwarded.inc(sum(f.events for f in forwards))
        keys = self.store.config.keys
        churned = [sid for left in gone.values() for sid in left]

        async def describe() -> list[Write]:
            return [*example_writes(keys, examples),
                    *await self.ledger.writes(decision.entries, decision.pending,
                                              staged.staged),
                    *(w for partition, clocks in active.items()
                      for w in self.silence.record(partition, clocks)),
                    *(w for partition, left in gone.items()
                      for w in self.silence.forget(partition, left)),
                    *self.writes.hold(decision),
                    *await self.risk.writes(decision.risk),
                    *self.writes.expire_churned(churned),
                    *(await effects() if effects is not None else [])]

        fenced = list(applied)  # and the home partitions of away events applied here
        if borrowed and self.homes is not None:
            fenced += [(self.homes.topic, p) for p in sorted(borrowed)]
        commit = self._batch_commit(describe, fenced,
                                    self.partitions.offsets(applied, seen),
                                    before_send=lambda: failpoint("before_redis_write"))
        async for attempt in self._retrying("batch"):
            with attempt:
                await commit.send()
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - t0)

    def _batch_commit(self, describe: Callable[[], Awaitable[list[Write]]],
                      partitions: Sequence[tuple[str, int]], offsets: AppliedOffsets | None,
                      before_send: Callable[[], None] | None = None) -> BatchCommit:
        return BatchCommit(self.store.redis, describe, cluster=self.ledger.router.cluster,
                           fence=self.partitions.fence, partitions=partitions, offsets=offsets,
                           before_send=before_send)

    async def _sweep_commit(self, partition: int, written: list[str],
                            describe: Callable[[], Awaitable[list[Write]]]) -> None:
        """A sweep's writes to ``partition``'s subscribers (fenced on the partition's claims
        when owned); the cached copies of ``written`` are forgotten."""
        tps = self.partitions.owned_of(partition)
        try:
            await self._batch_commit(describe, tps, None).send()
        finally:  # written (or maybe, if the write failed)
            self.store.forget(written)

    async def sweep(self, partition: int, publisher: Publisher, limit: int = 1000) -> BatchResult:
        """Re-score up to ``limit`` subscribers of ``partition`` who have been quiet, at the
        partition's watermark (``outcomes["due"]``: how many were due). Their alerts are
        triggered by a ``silence`` pseudo-event whose id is the watermark's day, so a repeated
        sweep gives the same alert ids. They are published after the batches committed
        before, and batches run meanwhile; returns once they are out."""
        async with self._lock:
            await self.commits.drain()  # it reads and writes the stored states
            result = BatchResult()
            rules = self.rules
            async for attempt in self._retrying("sweep"):
                with attempt:
                    watermark, due = await self.silence.due(self.store.redis, partition, limit)
                    result.outcomes["due"] = len(due)
                    if watermark is None or not due:
                        return result
                    snap = await self.store.snapshot(due, watermark)
                    idle_ms = self.store.config.ttl_s * 1000
                    expired = [sid for sid, t in snap.clocks.items() if t + idle_ms < watermark]
                    if expired:
                        async def expire() -> list[Write]:
                            return self.writes.expire(partition, expired)

                        await self._sweep_commit(partition, expired, expire)
                        self.metrics.expired.inc(len(expired))
                        due = sorted(set(due) - set(expired))
                        if not due:
                            return result
                        snap = await self.store.snapshot(due, watermark)
                    known = [snap.subscribers[i] for i in snap.rows.tolist()]
                    trigger_id = f"silence-{watermark // DAY_MS}"
                    triggers = [Event(event_id=trigger_id, subscriber_id=sid, type="silence",
                                      ts=watermark) for sid in known]
                    decision = decide_alerts(self._deciders(rules), triggers,
                                             snap.matrix, snap.attrs, snap.ledgers,
                                             [None] * len(known), int(self.clock() * 1000),
                                             publisher.wants_scores)
                    resolved, writes = resolve_sweep(self.labels, snap, watermark,
                                                     alert_marks(decision.alerts),
                                                     trigger_id)
                    async def describe() -> list[Write]:
                        return [*example_writes(self.store.config.keys, resolved.examples),
                                *await self.ledger.writes(decision.entries, decision.pending),
                                *await self.writes.tails_written(writes),
                                *self.silence.reschedule(partition, known, watermark),
                                *self.silence.forget(partition, sorted(set(due) - set(known))),
                                *self.writes.hold(decision),
                                *await self.risk.writes(decision.risk),
                                *await self.effects.register(decision.alerts,
                                                             decision.payloads)]

                    await self._sweep_commit(
                        partition, known + [w.subscriber_id for w in writes], describe)
            self.storm.commit(decision.storm_counts)
            result.outcomes["swept"] = len(known)
            count_labels(self.metrics, resolved)
            self.metrics.silence_checks.inc(len(known))
            delivery = self.delivery.after_sweep(decision, result, publisher)
        await delivery
        return result

    async def release(self, publisher: Publisher, limit: int = 500) -> int:
        """Deliver storm-held alerts an operator released, with their actions (new alert ids:
        the held copies were already delivered without actions)."""
        async with self._lock:
            key = self.store.config.keys.released()
            raw = await self.store.redis.lpop(key, limit)
            if not raw:
                return 0
            alerts = [released_copy(msgspec.json.decode(r, type=Alert)) for r in raw]
            await self.delivery.alerts_only(alerts, publisher)
            return len(alerts)

    def _retrying(self, operation: str) -> AsyncRetrying:
        return redis_retries(self.metrics, operation, self._reload_slots)

    def _reload_slots(self) -> None:
        self.store.router.invalidate()  # a cluster's slots may have moved
        self.ledger.router.invalidate()


def _started(work: Awaitable[None]) -> asyncio.Future[None]:
    """``work`` under way as a task; its failure is raised where it is awaited (or dropped
    with the batch, if the batch's commit never runs)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task
