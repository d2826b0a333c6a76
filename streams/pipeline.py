"""One micro-batch through the whole chain: decode → features → rules → model → alerts.

The pipeline knows nothing of Faust: it takes raw records with their Kafka coordinates and a
:class:`Publisher`, so it runs the same under the worker, in tests and in benchmarks.

Order of effects, and why nothing is lost or repeated:
1. stage features in Redis (nothing visible yet);
2. decide alerts in Python (rules kernel, model score, cooldowns, playbook);
3. commit: promote the staged features and record decided alerts as pending, atomically;
4. publish dead letters, alerts and scores; then mark the alerts delivered.
Redis errors retry the batch from step 1 (staging is overwritten). A replay after a crash
finds its events already applied (duplicates) and re-sends their still-pending alerts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np
import redis.exceptions
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from alerting.alert import Alert, ScoreRecord, alert_id, to_json
from alerting.cooldown import decide
from alerting.ledger import AlertLedger
from alerting.playbook import Playbook
from churnwatch.events import Event, decode_payload
from churnwatch.metrics import Metrics
from features.schema import DAY_MS
from features.store import APPLIED, LATE, FeatureStore
from online_models.model import ChurnModel, model_input
from rules.engine import CompiledRuleset, explain
from rules.ruleset import SEVERITIES

log = logging.getLogger("churnwatch.pipeline")

RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
             redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError,
             redis.exceptions.ReadOnlyError)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka message (or HTTP body) with its origin."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None


class DeadLetter(msgspec.Struct, frozen=True):
    """A rejected record: why, and exactly where it came from."""

    reason: str
    kind: str
    topic: str
    partition: int
    offset: int
    index: int
    payload: str


@dataclass
class BatchResult:
    """What a batch produced (already published when returned)."""

    alerts: list[Alert] = field(default_factory=list)
    replayed_alerts: int = 0
    scores: list[ScoreRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


class Publisher(Protocol):
    """Where a batch's outputs go. Each call must be durable when it returns."""

    wants_scores: bool

    async def dead_letters(self, payloads: list[bytes]) -> None: ...
    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None: ...
    async def scores(self, payloads: list[bytes]) -> None: ...


@dataclass
class _Decided:
    alerts: list[Alert]
    payloads: list[bytes]
    entries: dict[str, dict[str, bytes]]
    pending: dict[str, list[tuple[str, bytes]]]
    scores: list[ScoreRecord]
    labels: list[tuple[dict[str, float], bool]]
    rule_hits: dict[str, int]


class Pipeline:
    """Runs micro-batches; all collaborators are passed in."""

    def __init__(self, store: FeatureStore, ledger: AlertLedger, rules: CompiledRuleset,
                 model: ChurnModel, playbook: Playbook, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ledger = ledger
        self.rules = rules
        self.model = model
        self.playbook = playbook
        self.metrics = metrics
        self.clock = clock
        metrics.ruleset.labels(rules.version).set(1)
        metrics.model.labels(model.version).set(1)

    def switch_rules(self, rules: CompiledRuleset) -> None:
        """Use another compiled ruleset from the next batch on."""
        self.metrics.ruleset.labels(self.rules.version).set(0)
        self.rules = rules
        self.metrics.ruleset.labels(rules.version).set(1)

    async def run(self, records: Sequence[Record], publisher: Publisher) -> BatchResult:
        """Process and publish one batch; returns only when every effect is durable.
        The whole batch is decided by the ruleset active when it starts."""
        result = BatchResult()
        rules = self.rules
        events, origins = self._decode(records, result)
        decided = None
        async for attempt in self._retrying():
            with attempt:
                t0 = time.perf_counter()
                staged = await self.store.stage(events)
                t1 = time.perf_counter()
                decided = self._decide(rules, events, origins, records, staged,
                                       publisher.wants_scores)
                t2 = time.perf_counter()
                await self.ledger.commit(staged.subscribers, decided.entries, decided.pending)
                self.metrics.stage_seconds.labels("features").observe(t1 - t0)
                self.metrics.stage_seconds.labels("decide").observe(t2 - t1)
                self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - t2)
        assert decided is not None
        self._account(events, origins, records, staged, result)
        self._record(decided)
        alerts, payloads = decided.alerts, decided.payloads
        for raw in staged.pending_alerts:  # replayed duplicates whose alerts were not delivered
            alerts.append(msgspec.json.decode(raw, type=Alert))
            payloads.append(raw)
            result.replayed_alerts += 1
        if result.dead_letters:
            await publisher.dead_letters([msgspec.json.encode(d) for d in result.dead_letters])
        if alerts:
            await publisher.alerts(alerts, payloads)
            async for attempt in self._retrying():
                with attempt:
                    await self.ledger.mark_delivered(
                        [(a.subscriber_id, a.event_id, p) for a, p in zip(alerts, payloads)])
        if decided.scores:
            await publisher.scores([to_json(s) for s in decided.scores])
        for x, churned in decided.labels:
            self.model.learn(x, churned)
            self.metrics.labels.labels("churn" if churned else "active").inc()
        result.alerts = alerts
        result.scores = decided.scores
        return result

    def _record(self, decided: _Decided) -> None:
        for rule, n in decided.rule_hits.items():
            if n:
                self.metrics.rule_hits.labels(rule).inc(n)
        for alert in decided.alerts:
            self.metrics.alerts.labels(alert.severity, ",".join(alert.rules), alert.segment).inc()
            if alert.ingested_at:
                self.metrics.alert_latency.observe(
                    max(0.0, (alert.detected_at - alert.ingested_at) / 1000))

    def _retrying(self) -> AsyncRetrying:
        def before_sleep(state) -> None:  # type: ignore[no-untyped-def]
            self.metrics.redis_errors.inc()
            log.warning("redis unavailable (%s); retrying batch in %.1fs",
                        type(state.outcome.exception()).__name__, state.next_action.sleep)

        return AsyncRetrying(retry=retry_if_exception_type(RETRYABLE), reraise=True,
                             wait=wait_exponential_jitter(initial=0.1, max=5),
                             before_sleep=before_sleep)

    def _decode(self, records: Sequence[Record], result: BatchResult) -> tuple[list[Event], list[int]]:
        events: list[Event] = []
        origins: list[int] = []
        for n, rec in enumerate(records):
            valid, rejected = decode_payload(rec.value)
            events += valid
            origins += [n] * len(valid)
            for rej in rejected:
                result.dead_letters.append(DeadLetter(
                    rej.reason, "invalid", rec.topic, rec.partition, rec.offset, rej.index,
                    rej.raw.decode("utf-8", "replace")))
        self.metrics.batch_events.observe(len(events))
        return events, origins

    def _account(self, events: list[Event], origins: list[int], records: Sequence[Record],
                 staged, result: BatchResult) -> None:  # type: ignore[no-untyped-def]
        counts: Counter[tuple[str, str]] = Counter()
        outcome_name = {"A": "applied", "D": "duplicate", "L": "late"}
        for i, (ev, status) in enumerate(zip(events, staged.status)):
            counts[(ev.type, outcome_name[status])] += 1
            if status == LATE:
                rec = records[origins[i]]
                result.dead_letters.append(DeadLetter(
                    "late: older than the subscriber's clock minus the allowed lateness", "late",
                    rec.topic, rec.partition, rec.offset, i, msgspec.json.encode(ev).decode()))
        for (kind, outcome), n in counts.items():
            self.metrics.events.labels(kind, outcome).inc(n)
            result.outcomes[outcome] += n
        for letter in result.dead_letters:
            self.metrics.dead_letters.labels(letter.kind).inc()

    def _decide(self, rules: CompiledRuleset, events: list[Event], origins: list[int],
                records: Sequence[Record], staged,  # type: ignore[no-untyped-def]
                wants_scores: bool) -> _Decided:
        ruleset = rules.ruleset
        evaluation = rules.evaluate(staged.matrix)
        xs = [model_input(row, attrs) for row, attrs in zip(staged.matrix, staged.attrs)]
        scores = self.model.score(xs)
        segment_names = ruleset.segment_names
        rule_ids = [r.id for r in ruleset.rules]
        acting = np.array([not r.shadow for r in ruleset.rules], dtype=np.bool_)
        rule_hits = dict(zip(rule_ids, evaluation.hits.sum(axis=0).tolist()))
        entries = {sid: dict(e) for sid, e in staged.ledgers.items()}
        changed: dict[str, dict[str, bytes]] = {}
        pending: dict[str, list[tuple[str, bytes]]] = {}
        alerts, payloads, score_records, labels = [], [], [], []
        now_ms = int(self.clock() * 1000)
        for j, i in enumerate(staged.rows.tolist()):
            ev = events[i]
            hits = evaluation.hits[j]
            severity_rank = int(evaluation.severity[j])
            segment = segment_names[evaluation.segment[j]]
            if ev.type in ("churn", "active"):
                labels.append((xs[j], ev.type == "churn"))
            if wants_scores:
                score_records.append(ScoreRecord(
                    ev.event_id, ev.subscriber_id, ev.ts, float(scores[j]),
                    SEVERITIES[severity_rank - 1] if severity_rank else None,
                    [rule_ids[k] for k in np.flatnonzero(hits & acting)], segment))
            if not severity_rank:
                continue
            candidates = [(rule.id, _rank(rule.severity), int(rule.cooldown_days * DAY_MS))
                          for k, rule in enumerate(ruleset.rules) if hits[k] and not rule.shadow]
            sub_entries = entries.setdefault(ev.subscriber_id, {})
            passed = decide(sub_entries, candidates, ev.ts, ev.event_id)
            if not passed:
                continue
            for rule in passed:
                changed.setdefault(ev.subscriber_id, {})[rule] = sub_entries[rule]
            rank = max(_rank(ruleset.rules[rule_ids.index(r)].severity) for r in passed)
            row = staged.matrix[j]
            reasons = [{"kind": "indicator", **reason}
                       for reason in explain(ruleset, row, evaluation.indicators[j])]
            reasons += [{"kind": "model", **c} for c in self.model.explain(xs[j])]
            ingested = records[origins[i]].timestamp_ms
            alert = Alert(
                alert_id=alert_id(ev.subscriber_id, ev.event_id, passed),
                subscriber_id=ev.subscriber_id, ts=ev.ts, event_id=ev.event_id,
                severity=SEVERITIES[rank - 1], score=round(float(scores[j]), 6),
                rules=sorted(passed), reasons=reasons, segment=segment,
                actions=self.playbook.choose(SEVERITIES[rank - 1], segment, row),
                detected_at=now_ms, model_version=self.model.version,
                ruleset_version=ruleset.version, ingested_at=ingested)
            payload = to_json(alert)
            alerts.append(alert)
            payloads.append(payload)
            pending.setdefault(ev.subscriber_id, []).append((ev.event_id, payload))
        return _Decided(alerts, payloads, changed, pending, score_records, labels, rule_hits)


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) + 1
