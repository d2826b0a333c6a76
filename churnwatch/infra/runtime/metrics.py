"""Prometheus metrics of a worker, on a registry passed in (no global state).

Conventions: every name starts with ``churnwatch_``, durations are in seconds, counters get
``_total`` from prometheus_client, and every label takes values from a small fixed set (event
types, outcomes, stages, sinks, rule ids and segments of the ruleset, partitions): never a
subscriber id, event id, alert id or phone number. The hot path accumulates per batch and
calls ``inc(n)`` once per label set (see :func:`inc_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
# event-to-alert latency: 1 ms steps up to 10 ms, then finer than 2x up to a minute
LATENCY_BUCKETS = (*(n / 1000 for n in range(1, 11)), 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                   0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 10,
                   30, 60)
STAGES = ("decode", "features", "decide", "commit", "publish", "outcomes", "learn")
SINKS = ("kafka", "jsonl", "work_queue", "webhook")
WITHHELD_REASONS = {"do-not-contact": "do_not_contact", "monthly contact cap": "contact_cap",
                    "monthly offer cap": "offer_cap", "storm hold": "storm_hold",
                    "holdout": "holdout"}


def standard_registry() -> CollectorRegistry:
    """A new registry with prometheus_client's standard ``process_*``, ``python_gc_*`` and
    ``python_info`` collectors, as the default registry has."""
    registry = CollectorRegistry()
    for standard in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
        registry.register(standard)
    return registry


class Metrics:
    """Every metric the worker records; names follow Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """``registry``: where to register (default: :func:`standard_registry`)."""
        self.registry = registry if registry is not None else standard_registry()
        r = self.registry
        self.events = Counter("churnwatch_events", "Valid events by type and outcome (applied, "
                              "duplicate, late); invalid records are in churnwatch_dlq_records",
                              ["type", "outcome"], registry=r)
        self.dead_letters = Counter("churnwatch_dlq_records", "Records sent to the dead-letter "
                                    "topic by reason kind (invalid, late, webhook, internal)",
                                    ["kind"], registry=r)
        self.batch_events = Histogram("churnwatch_batch_events", "Valid events per micro-batch",
                                      buckets=_SIZES, registry=r)
        self.stage_seconds = Histogram("churnwatch_stage_duration_seconds", "Time per pipeline "
                                       "stage per batch", ["stage"], buckets=_SECONDS, registry=r)
        self.batch_seconds = Histogram("churnwatch_batch_duration_seconds", "Time to process "
                                       "one micro-batch, all stages", buckets=_SECONDS,
                                       registry=r)
        self.batch_wait = Histogram("churnwatch_batch_wait_seconds", "Age of a micro-batch's "
                                    "oldest message (broker timestamp) when the batch starts: "
                                    "how long events queued before processing",
                                    buckets=_SECONDS, registry=r)
        self.alerts = Counter("churnwatch_alerts", "Alerts raised by severity, primary rule "
                              "(the most severe of the alert's rules) and segment",
                              ["severity", "rule", "segment"], registry=r)
        self.rule_hits = Counter("churnwatch_rule_hits", "Rule hits (shadow rules included, "
                                 "before cooldown)", ["rule"], registry=r)
        self.loop_lag = Histogram("churnwatch_event_loop_lag_seconds", "How much later than "
                                  "asked a task on the worker's event loop woke up (sampled "
                                  "every 50 ms): how long batches, timers and the learner "
                                  "held the loop", buckets=_SECONDS, registry=r)
        self.alert_latency = Histogram("churnwatch_event_to_alert_seconds", "From the "
                                       "triggering message's broker timestamp until every sink "
                                       "has the alert", buckets=LATENCY_BUCKETS, registry=r)
        self.actions = Counter("churnwatch_actions", "Retention actions handed to each alert "
                               "sink by result (sent, duplicate, dead_letter)",
                               ["sink", "result"], registry=r)
        self.withheld = Counter("churnwatch_actions_withheld", "Actions withheld by the contact "
                                "policy or storm protection, by reason", ["reason"], registry=r)
        self.labels = Counter("churnwatch_model_labels", "Labels learned by the model",
                              ["label"], registry=r)
        self.silence_sweeps = Counter("churnwatch_silence_sweeps", "Silence sweeps of one "
                                      "partition by result (ok, error)", ["result"], registry=r)
        self.dropped_attrs = Counter("churnwatch_dropped_attrs", "Profile attributes dropped "
                                     "beyond attrs_max_keys or attrs_max_key_length (the "
                                     "profile itself is applied)", registry=r)
        self.state_cache = Counter("churnwatch_state_cache_lookups", "Subscriber state looked "
                                   "up in the worker's cache by result (hit, miss: read from "
                                   "Redis)", ["result"], registry=r)
        self.state_cache_size = Gauge("churnwatch_state_cache", "The worker's state cache: "
                                      "subscribers held, and bytes of memory it takes (its "
                                      "log buffer and index)", ["measure"], registry=r)
        self.expired = Counter("churnwatch_subscribers_expired", "Subscribers whose state was "
                               "removed after state_ttl_days without events (event time)",
                               registry=r)
        self.silence_checks = Counter("churnwatch_silence_checks", "Quiet subscribers re-scored "
                                      "by the silence sweep", registry=r)
        self.redis_errors = Counter("churnwatch_redis_errors", "Redis errors by operation "
                                    "(each retried or skipped until the next run)",
                                    ["operation"], registry=r)
        self.webhook_deliveries = Counter("churnwatch_webhook_deliveries", "Alerts sent to the "
                                          "webhook by outcome (delivered, dead_letter)",
                                          ["outcome"], registry=r)
        self.webhook_retries = Counter("churnwatch_webhook_retries", "Webhook attempts beyond "
                                       "the first", registry=r)
        self.consumer_lag = Gauge("churnwatch_consumer_lag_records", "Records of an assigned "
                                  "partition not yet processed (fetch high watermark minus "
                                  "the next offset to process)", ["topic", "partition"],
                                  registry=r)
        self.broker_reset = Gauge("churnwatch_broker_reset_detected", "1 once the broker lost "
                                  "data this worker had seen (the worker then stops)",
                                  registry=r)
        self.fenced_batches = Counter("churnwatch_fenced_batches", "Batch commits refused "
                                      "because another worker had claimed a partition of the "
                                      "batch (a stalled former owner); the records are re-read",
                                      registry=r)
        self.forwarded = Counter("churnwatch_forwarded_events", "Events of churn.events that "
                                 "arrived away from their subscriber's home partition and were "
                                 "forwarded to it (the internal topic <app_id>.churn.events.home)",
                                 registry=r)
        self.away_here = Counter("churnwatch_away_applied_events", "Events of churn.events that "
                                 "arrived away from their subscriber's home partition and were "
                                 "applied where they arrived, because this worker owns the home "
                                 "partition too (nothing to forward)", registry=r)
        self.ruleset = Gauge("churnwatch_ruleset_info", "Active ruleset version (always 1)",
                             ["version"], registry=r)
        self.model = Gauge("churnwatch_model_info", "Active model version (always 1)",
                           ["version"], registry=r)
        self.examples = Counter("churnwatch_model_examples", "Labelled snapshots this worker "
                                "appended for the learner, by label", ["label"], registry=r)
        self.examples_repeated = Counter("churnwatch_model_examples_repeated", "Examples the "
                                         "learner dropped as already learned", registry=r)
        self.dedup_early_rotations = Counter(
            "churnwatch_model_dedup_early_rotations", "Times the learner's dedup window filled "
            "(model_dedup_capacity) before spanning model_dedup_window_s: repeats older than "
            "the span it reached are learned again", registry=r)
        self.versions_refused = Counter(
            "churnwatch_model_versions_refused", "Stored model versions refused because their "
            "value is not a churnwatch model document (a pickle, a planted or corrupted "
            "value): never loaded, counted once per version and process", registry=r)
        self.snapshots_dropped = Counter("churnwatch_model_snapshots_dropped", "Snapshots never "
                                         "learned, by reason (treated: a retention action "
                                         "confounds the label; after_label: taken after the "
                                         "churn time; label_cap: labelled by a label beyond "
                                         "model_max_labels_per_horizon)", ["reason"], registry=r)
        self.holdout_alerts = Counter("churnwatch_holdout_alerts", "Alerts whose actions the "
                                      "random holdout withheld", registry=r)
        self.experiment = Counter("churnwatch_retention_experiment", "Alerted subscribers by "
                                  "group (treated, holdout) and result (churned within the "
                                  "horizon, retained)", ["group", "result"], registry=r)

    def set_version(self, gauge: Gauge, new: str, old: str | None = None) -> None:
        """Point an ``_info`` gauge at ``new``, dropping the ``old`` series."""
        if old is not None and old != new:
            try:
                gauge.remove(old)
            except KeyError:
                pass
        gauge.labels(new).set(1)


def inc_counts(counter: Counter, counts: Mapping[tuple[str, ...], int]) -> None:
    """One ``inc(n)`` per label set: ``counts`` maps label tuples to amounts."""
    for labels, n in counts.items():
        if n:
            counter.labels(*labels).inc(n)


_MS_SECONDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
               0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """Metrics of the HTTP ingest process (``churnwatch ingest``), on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """``registry``: where to register (default: :func:`standard_registry`)."""
        self.registry = registry if registry is not None else standard_registry()
        r = self.registry
        self.requests = Counter("churnwatch_ingest_requests", "HTTP requests to /v1/events by "
                                "response status", ["status"], registry=r)
        self.accepted = Counter("churnwatch_ingest_events_accepted", "Events acknowledged by "
                                "the broker on churn.events, by feed", ["feed"], registry=r)
        self.rejected = Counter("churnwatch_ingest_events_rejected", "Events rejected (and "
                                "dead-lettered) by feed and reason kind", ["feed", "kind"],
                                registry=r)
        self.refused = Counter("churnwatch_ingest_events_refused", "Events in requests refused "
                               "as a whole (413, 429, 503) by feed and status",
                               ["feed", "status"], registry=r)
        self.latency = Histogram("churnwatch_ingest_request_duration_seconds", "Time from "
                                 "request start to response for /v1/events",
                                 buckets=_MS_SECONDS, registry=r)
        self.in_flight = Gauge("churnwatch_ingest_in_flight_requests", "Admitted requests "
                               "being read, validated or produced", registry=r)
