"""Delivery: a committed batch's (or sweep's) outputs published, in commit order.

Once a batch's commit landed (its states and pending alerts are stored) and the previous
batch's delivery is done, its dead letters, alerts and scores go to the :class:`Publisher`,
then its alerts are marked delivered and its outcomes recorded. The next batch is processed
meanwhile; a batch's Kafka messages are acknowledged only when its delivery is done, so a
crash before that replays it and the replay re-sends its still-pending alerts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerting.alert import Alert, ScoreRecord, to_json
from alerting.decide import Decision
from alerting.ledger import AlertLedger
from alerting.outcomes import OutcomeTracker
from churnwatch.core.events import Event
from churnwatch.infra.redis.writes import Write
from churnwatch.infra.runtime.failpoints import failpoint
from churnwatch.infra.runtime.metrics import Metrics
from rules.ruleset import Ruleset
from streams.accounting import count_alerts
from streams.commit import BatchCommit
from streams.records import DeadLetter, Record, next_offsets
from streams.repartition import Forward

__all__ = ["BatchResult", "Committed", "Delivery", "Publisher"]


@dataclass
class BatchResult:
    """What a batch (or a sweep) produced, already published when returned."""

    alerts: list[Alert] = field(default_factory=list)
    replayed_alerts: int = 0
    scores: list[ScoreRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Committed:
    """A batch decided and its commit submitted, its outputs not yet published."""

    records: Sequence[Record]
    result: BatchResult
    decision: Decision
    outcomes: list[Event]
    started: float
    landed: asyncio.Future[None]  # the batch's commit (features.commits.CommitChain)


class Publisher(Protocol):
    """Where a batch's outputs go. Each call must be durable when it returns."""

    wants_scores: bool

    async def dead_letters(self, payloads: list[bytes]) -> None: ...
    async def forward(self, topic: str, messages: list[Forward]
                      ) -> Mapping[int, int] | None: ...
    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None: ...
    async def scores(self, payloads: list[bytes]) -> None: ...


class Delivery:
    """Publishes batches' outputs one after the other, in the order their commits were
    submitted, and tracks the alerts under way (decided, not yet delivered)."""

    def __init__(self, ledger: AlertLedger, outcomes: OutcomeTracker, metrics: Metrics,
                 ruleset: Callable[[], Ruleset], retrying: Callable[[str], Any],
                 clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.outcomes = outcomes
        self.metrics = metrics
        self.ruleset = ruleset  # the ruleset active now (for the alert counters)
        self.retrying = retrying  # tenacity retries of a Redis operation
        self.clock = clock
        self.positions: dict[tuple[str, int], int] = {}  # next offset to process per partition
        self._outbox = asyncio.Lock()  # one publisher call sequence at a time
        self._latest: asyncio.Future[BatchResult] | None = None  # the latest batch's delivery
        self._undelivered: Counter[tuple[str, str]] = Counter()  # alerts of those under way

    async def _commit(self, describe: Callable[[], Awaitable[list[Write]]]) -> None:
        """Send delivery-time writes (idempotent: alerts marked delivered) as a commit."""
        await BatchCommit(self.ledger.redis, describe, cluster=self.ledger.router.cluster).send()

    def under_way(self, alert: Alert) -> bool:
        """Whether an earlier batch's delivery, still under way, sends ``alert``."""
        return (alert.subscriber_id, alert.event_id) in self._undelivered

    def after_commit(self, batch: Committed, publisher: Publisher) -> asyncio.Future[BatchResult]:
        """Deliver ``batch`` once its commit landed and the previous delivery is done."""
        self._undelivered.update((a.subscriber_id, a.event_id) for a in batch.decision.alerts)
        self._latest = asyncio.ensure_future(self._deliver(self._latest, batch, publisher))
        return self._latest

    def after_sweep(self, decision: Decision, result: BatchResult,
                    publisher: Publisher) -> asyncio.Future[BatchResult]:
        """Publish a sweep's decision (committed already) after the previous delivery."""
        self._latest = asyncio.ensure_future(
            self._publish_after(self._latest, decision, result, publisher))
        return self._latest

    async def alerts_only(self, alerts: list[Alert], publisher: Publisher) -> None:
        """Publish alerts that need no commit (released storm-held copies)."""
        async with self._outbox:
            await publisher.alerts(alerts, [to_json(a) for a in alerts])

    async def _deliver(self, previous: asyncio.Future[BatchResult] | None,
                       batch: Committed, publisher: Publisher) -> BatchResult:
        """Publish a committed batch's outputs after the previous batch's delivery."""
        if previous is not None:
            await asyncio.wait([previous])  # its own awaiter sees its error
        await batch.landed  # its states and pending alerts are stored
        failpoint("after_commit")
        stage = self.metrics.stage_seconds
        t0 = time.perf_counter()
        try:
            async with self._outbox:
                await self._publish(batch.decision, batch.result, publisher)
        finally:
            self._undelivered.subtract((a.subscriber_id, a.event_id)
                                       for a in batch.decision.alerts)
            self._undelivered += Counter()  # drops the zero counts
        t1 = time.perf_counter()
        stage.labels("publish").observe(t1 - t0)
        if batch.outcomes:
            async for attempt in self.retrying("outcomes"):
                with attempt:
                    await self.outcomes.record(batch.outcomes)
            stage.labels("outcomes").observe(time.perf_counter() - t1)
        self._advance(batch.records)
        self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        return batch.result

    def _advance(self, records: Sequence[Record]) -> None:
        """Remember the next offset to process of each partition (for the lag gauge)."""
        positions = self.positions
        for key, offset in next_offsets(records).items():
            if offset > positions.get(key, 0):
                positions[key] = offset

    async def _publish_after(self, previous: asyncio.Future[BatchResult] | None,
                             decision: Decision, result: BatchResult,
                             publisher: Publisher) -> BatchResult:
        if previous is not None:
            await asyncio.wait([previous])  # its own awaiter sees its error
        async with self._outbox:
            await self._publish(decision, result, publisher)
        return result

    async def _publish(self, decision: Decision, result: BatchResult,
                       publisher: Publisher) -> None:
        for rule, n in decision.rule_hits.items():
            if n:
                self.metrics.rule_hits.labels(rule).inc(n)
        if decision.alerts:
            failpoint("before_send")
            await publisher.alerts(decision.alerts, decision.payloads)
            sent_ms = self.clock() * 1000
            failpoint("after_send")
            async for attempt in self.retrying("batch"):
                with attempt:
                    await self._commit(lambda: self.ledger.delivered_writes(
                        [(a.subscriber_id, a.event_id, p)
                         for a, p in zip(decision.alerts, decision.payloads)]))
            count_alerts(self.metrics, self.ruleset(), decision.alerts, sent_ms)
        if decision.scores:
            await publisher.scores([to_json(s) for s in decision.scores])
        result.alerts = decision.alerts
        result.scores = decision.scores
