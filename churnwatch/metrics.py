"""Prometheus metrics of a worker, on a registry passed in (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)


class Metrics:
    """Every metric the pipeline records; names follow Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("churnwatch_events", "Events by type and outcome "
                              "(applied, duplicate, late)", ["type", "outcome"], registry=r)
        self.dead_letters = Counter("churnwatch_dlq_records", "Records sent to the dead-letter "
                                    "topic by reason kind", ["kind"], registry=r)
        self.batch_events = Histogram("churnwatch_batch_events", "Valid events per micro-batch",
                                      buckets=_SIZES, registry=r)
        self.stage_seconds = Histogram("churnwatch_stage_duration_seconds", "Time per pipeline "
                                       "stage per batch", ["stage"], buckets=_SECONDS, registry=r)
        self.alerts = Counter("churnwatch_alerts", "Alerts raised", ["severity", "rule", "segment"],
                              registry=r)
        self.rule_hits = Counter("churnwatch_rule_hits", "Rule hits (shadow rules included, "
                                 "before cooldown)", ["rule"], registry=r)
        self.alert_latency = Histogram("churnwatch_event_to_alert_seconds", "From the triggering "
                                       "message's broker timestamp to the alert decision",
                                       buckets=_SECONDS, registry=r)
        self.labels = Counter("churnwatch_model_labels", "Labels learned by the model",
                              ["label"], registry=r)
        self.silence_checks = Counter("churnwatch_silence_checks", "Quiet subscribers re-scored "
                                      "by the silence sweep", registry=r)
        self.redis_errors = Counter("churnwatch_redis_errors", "Redis errors (each retried)",
                                    registry=r)
        self.webhook_deliveries = Counter("churnwatch_webhook_deliveries", "Alerts sent to the "
                                          "webhook by outcome (delivered, dead_letter)",
                                          ["outcome"], registry=r)
        self.webhook_retries = Counter("churnwatch_webhook_retries", "Webhook attempts beyond "
                                       "the first", registry=r)
        self.queued_actions = Counter("churnwatch_queued_actions", "Actions added to the team "
                                      "work queues", registry=r)
        self.broker_reset = Gauge("churnwatch_broker_reset_detected", "1 once the broker lost "
                                  "data this worker had seen (the worker then stops)",
                                  registry=r)
        self.ruleset = Gauge("churnwatch_ruleset_info", "Active ruleset version", ["version"],
                             registry=r)
        self.model = Gauge("churnwatch_model_info", "Active model version", ["version"], registry=r)


_MS_SECONDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
               0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """Metrics of the HTTP ingest process (``churnwatch ingest``), on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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
