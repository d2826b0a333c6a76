"""Replay an event feed through the worker's own code and measure the model as it runs.

The events go, in batches and in the order given, through :class:`~streams.pipeline.Pipeline`
(the real feature store on the Redis given, rules, delayed labels on stored snapshots) with
the fleet learner (:class:`~online_models.learner.Learner`) stepping and publishing after
every batch and the pipeline switching to the new version
(:class:`~online_models.learner.ModelWatcher`), as the worker's timers would. The silence
sweep runs too, on event time: after a batch, every partition whose watermark moved on by
``sweep_every_ms`` since its last sweep is swept until nobody is due
(:func:`~streams.sweep.sweep_in_pages`, the worker's own code), so quiet subscribers are
re-scored, snapshotted and labelled by survival as in a worker. The worker's timer ticks
every ``silence_interval_s`` of wall-clock time; fed in real time that is seconds of event
time, less than a batch spans, hence the default: a sweep after every batch. A worker fed
faster (a backlog, a benchmark at N days of event time a second) sweeps every
``silence_interval_s`` × N of event time, which ``sweep_every_ms`` reproduces; ``None``
turns the sweep off. Nothing is published to Kafka.

The figures are the worker's own: every example the learner learns (a stored snapshot joined
to its ``churn``/``active`` label) is paired with the score record the pipeline published
for that snapshot's event or sweep, made with the version active at the time, so each score
comes from a model that had not learned that label (prequential).

``churnwatch evaluate`` (on an embedded redis-server) and the benchmarks that feed tables
through the pipeline (``benchmarks/bench_telco_feed.py``) both run this driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from alerting.alert import Alert
from alerting.holdout import Holdout
from alerting.ledger import AlertLedger
from alerting.playbook import Playbook, load_playbook
from churnwatch.infra.runtime.metrics import Metrics
from features.silence import SilenceIndex
from features.store import FeatureStore
from online_models.evaluate import metrics as quality_metrics
from online_models.learner import Learner, ModelWatcher
from online_models.model import ChurnModel
from online_models.snapshots import Example, LabelPolicy
from online_models.versions import ModelVersions
from rules.engine import CompiledRuleset, compile_ruleset
from rules.ruleset import load_ruleset
from streams.delivery import BatchResult
from streams.pipeline import Pipeline
from streams.records import Record
from streams.sweep import sweep_in_pages

TOPIC = "churn.events"
_examples = msgspec.msgpack.Decoder(list[Example])


class _Publisher:
    """Takes the pipeline's outputs and keeps nothing (the driver reads the batch results);
    asks for score records, as a worker with ``publish_scores`` does."""

    wants_scores = True

    async def dead_letters(self, payloads: list[bytes]) -> None:
        pass

    async def forward(self, topic: str, messages: list[Any]) -> None:
        pass

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        pass

    async def scores(self, payloads: list[bytes]) -> None:
        pass


@dataclass
class Replay:
    """What a replay produced: every score record's score by (subscriber, event time) — the
    first at that time, which is the row a snapshot is taken from; a silence sweep's are at
    the partition's watermark — and the examples the learner learned, in learning order."""

    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    # event id → (event time, score), the events' score records (not the sweeps')
    score_events: dict[str, tuple[int, float]] = field(default_factory=dict)
    swept: set[tuple[str, int]] = field(default_factory=set)  # re-scored by a sweep
    sweeps: int = 0  # sweep pages run
    examples: list[Example] = field(default_factory=list)
    alerts: int = 0
    events: dict[str, int] = field(default_factory=dict)
    model: ChurnModel | None = None
    learner_roc_auc: float | None = None
    seconds: float = 0.0
    metrics: Metrics | None = None  # the pipeline's and the learner's counters

    def pairs(self, sweeps: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(snapshot time, score, churned) of each learned example whose snapshot was scored,
        in snapshot-time order (``sweeps=False``: only the snapshots of events)."""
        rows = sorted((ex.snapshot_ts, self.scores[key], ex.churned, ex.subscriber_id)
                      for ex in self.examples
                      if (key := (ex.subscriber_id, ex.snapshot_ts)) in self.scores
                      and (sweeps or key not in self.swept))
        return (np.array([r[0] for r in rows], dtype=np.int64),
                np.array([r[1] for r in rows], dtype=np.float64),
                np.array([r[2] for r in rows], dtype=bool))


def records(lines: Iterable[bytes]) -> list[Record]:
    """Raw payloads (NDJSON lines or multi-event payloads) as consumed records; blank lines
    are skipped."""
    out = []
    for line in lines:
        line = line.strip()
        if line:
            out.append(Record(TOPIC, 0, len(out), line))
    return out


async def replay(redis: Any, feed: Sequence[Record], *, batch: int = 500,
                 holdout: float = 1.0, policy: LabelPolicy | None = None,
                 model_factory: Callable[[], ChurnModel] = ChurnModel,
                 rules: CompiledRuleset | None = None, playbook: Playbook | None = None,
                 silence: SilenceIndex | None = None, sweep_every_ms: int | None = 0,
                 sweep_page: int = 200,
                 on_batch: Callable[[int], None] | None = None) -> Replay:
    """Feed ``feed`` through a pipeline and the fleet learner on ``redis`` (a
    ``redis.asyncio`` client of an empty database), ``batch`` records at a time.

    ``holdout``: share of alerted subscribers not acted on; 1 (the default) acts on nobody,
    so no label is hidden by a retention action (a treated subscriber's snapshots are not
    learned). ``silence``: the silence index's quiet and re-check times (default: the
    settings' defaults); after a batch, a partition whose watermark is ``sweep_every_ms``
    or more past its last sweep's is swept, ``sweep_page`` subscribers a page, until nobody
    is due (0: after every batch; ``None``: no sweep). ``on_batch`` is called with the
    records done after every batch."""
    if sweep_every_ms is not None and sweep_every_ms < 0:
        raise ValueError("sweep_every_ms must be at least 0 (None: no sweep)")
    metrics = Metrics()
    store = FeatureStore(redis)
    pipeline = Pipeline(store, AlertLedger(redis),
                        rules or compile_ruleset(load_ruleset()), model_factory(),
                        playbook or load_playbook(), metrics,
                        silence or SilenceIndex(store.config.keys),
                        labels=policy or LabelPolicy(), holdout=Holdout(holdout))
    versions = ModelVersions(redis)
    learner = Learner(redis, versions, metrics, "replay", publish_every_s=0.0,
                      model_factory=model_factory)
    watcher = ModelWatcher(versions, pipeline.switch_model)
    publisher, out = _Publisher(), Replay()
    stream, cursor, seen = versions.keys.model("examples"), "0-0", set()
    partitions: set[int] = set()
    last_sweep: dict[int, int] = {}  # partition → its watermark at its last sweep
    started = time.perf_counter()
    for k in range(0, len(feed), batch):
        chunk = feed[k:k + batch]
        result = await pipeline.run(chunk, publisher)
        out.alerts += len(result.alerts)
        for record in result.scores:
            out.scores.setdefault((record.subscriber_id, record.ts), record.score)
            out.score_events[record.event_id] = (record.ts, record.score)
        partitions.update(r.partition for r in chunk)
        if sweep_every_ms is not None:
            for partition in sorted(partitions):
                watermark = await pipeline.silence.watermark(redis, partition)
                if watermark is None or (partition in last_sweep and
                                         watermark < last_sweep[partition] + sweep_every_ms):
                    continue
                last_sweep[partition] = watermark
                for swept in await sweep_in_pages(pipeline, publisher, partition, sweep_page):
                    _sweep_done(out, swept)
        for entry_id, fields in await redis.xrange(stream, min=f"({cursor}"):
            cursor = entry_id.decode()
            for example in _examples.decode(fields[b"x"]):
                if example.id not in seen:  # a repeated append is learned once
                    seen.add(example.id)
                    out.examples.append(example)
        await learner.step(publish=True)
        await watcher.poll()
        if on_batch is not None:
            on_batch(min(k + batch, len(feed)))
    out.seconds = time.perf_counter() - started
    out.model = pipeline.model
    out.learner_roc_auc = learner.quality.snapshot().roc_auc
    out.events = _event_counts(metrics)
    out.metrics = metrics
    return out


def _sweep_done(out: Replay, result: BatchResult) -> None:
    out.sweeps += 1
    out.alerts += len(result.alerts)
    for record in result.scores:
        key = (record.subscriber_id, record.ts)
        out.scores.setdefault(key, record.score)
        out.swept.add(key)


def _event_counts(metrics: Metrics) -> dict[str, int]:
    registry = metrics.registry
    counts: dict[str, int] = {"applied": 0, "duplicate": 0, "late": 0, "invalid": 0}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "churnwatch_events_total" and \
                    sample.labels.get("outcome") in counts:
                counts[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "churnwatch_dlq_records_total" and \
                    sample.labels.get("kind") == "invalid":
                counts["invalid"] += int(sample.value)
    return counts


def report(run: Replay, threshold: float = 0.5, bins: int = 10) -> dict[str, Any]:
    """Prequential quality of the worker's scores on the learned examples whose snapshot an
    event took (each label against the score the worker published for that event): over all
    of them and over the later half (by snapshot time, from ``second_half.from_label`` on).
    The silence sweep's re-scores are learned too; ``all_learned`` gives the same figures
    with them (a quiet subscriber counts once per snapshot, scored by later versions)."""
    _, scores, labels = run.pairs(sweeps=False)
    model = run.model
    positives, negatives = model.label_counts() if model is not None else (0, 0)
    _, all_scores, all_labels = run.pairs()
    return {
        "model_version": model.version if model is not None else None,
        "events": run.events,
        "labels_learned": {"churned": positives, "active": negatives},
        "examples_unscored": len(run.examples) - len(all_scores),
        "examples_of_sweeps": len(all_scores) - len(scores),
        "learner_progressive_roc_auc": run.learner_roc_auc,
        "threshold": threshold,
        "bins": bins,
        **_halves(scores, labels, threshold, bins),
        "all_learned": _halves(all_scores, all_labels, threshold, bins),
    }


def _halves(scores: np.ndarray, labels: np.ndarray, threshold: float, bins: int
            ) -> dict[str, Any]:
    half = len(scores) // 2
    return {"overall": quality_metrics(scores, labels, threshold, bins),
            "second_half": {"from_label": half,
                            **quality_metrics(scores[half:], labels[half:], threshold, bins)}}
