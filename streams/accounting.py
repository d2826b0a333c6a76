"""What a batch counts in the worker's metrics: alerts, withheld actions, latency, the
online model's labels and the state cache's lookups. One ``inc(n)`` per label set per batch, never one per event."""

from __future__ import annotations

from collections import Counter

from alerting.alert import Alert
from churnwatch.core.severity import SEVERITY_RANK
from churnwatch.infra.runtime.metrics import WITHHELD_REASONS, Metrics, inc_counts
from features.cache import StateCache
from features.store import BatchFeatures
from online_models.snapshots import Resolved
from rules.ruleset import Ruleset


def count_alerts(metrics: Metrics, ruleset: Ruleset, alerts: list[Alert], sent_ms: float) -> None:
    """Alerts by severity, primary (most severe) rule and segment; actions withheld by reason;
    holdout alerts; event-to-alert latency up to ``sent_ms`` (when every sink has the alert)."""
    rank = {r.id: SEVERITY_RANK[r.severity] for r in ruleset.rules}
    raised: Counter[tuple[str, str, str]] = Counter()
    withheld: Counter[tuple[str]] = Counter()
    holdout = 0
    for alert in alerts:
        primary = max(sorted(alert.rules), key=lambda r: rank.get(r, 0), default="none")
        raised[(alert.severity, primary, alert.segment)] += 1
        for item in alert.suppressed:
            withheld[(WITHHELD_REASONS.get(item.get("reason", ""), "other"),)] += 1
        holdout += alert.holdout
        if alert.ingested_at:
            metrics.alert_latency.observe(max(0.0, (sent_ms - alert.ingested_at) / 1000))
    inc_counts(metrics.alerts, raised)
    inc_counts(metrics.withheld, withheld)
    if holdout:
        metrics.holdout_alerts.inc(holdout)


def count_labels(metrics: Metrics, resolved: Resolved) -> None:
    """Examples appended for the learner by label, snapshots dropped by reason, and the
    retention experiment's outcomes by group."""
    inc_counts(metrics.examples, Counter(("churn" if e.churned else "active",)
                                         for e in resolved.examples))
    inc_counts(metrics.snapshots_dropped, {(r,): n for r, n in resolved.dropped.items()})
    inc_counts(metrics.experiment, Counter((group, "churned" if churned else "retained")
                                           for group, churned in resolved.outcomes))


def count_dropped_attrs(metrics: Metrics, staged: BatchFeatures) -> None:
    """Profile attributes the store dropped beyond its bounds (``features.attrs``)."""
    if staged.attrs_dropped:
        metrics.dropped_attrs.inc(staged.attrs_dropped)


def count_cache(metrics: Metrics, cache: StateCache) -> None:
    """The state cache's hits and misses since the last batch, and its size."""
    hits, misses = cache.take_counts()
    metrics.state_cache_size.labels("subscribers").set(len(cache))
    metrics.state_cache_size.labels("bytes").set(cache.memory_bytes)
    if hits:
        metrics.state_cache.labels("hit").inc(hits)
    if misses:
        metrics.state_cache.labels("miss").inc(misses)


def count_replays(metrics: Metrics, events: list) -> None:
    """Events of re-read records already applied (before their partition's applied offset):
    counted as duplicates, by type."""
    inc_counts(metrics.events, Counter((ev.type, "duplicate") for ev in events))
