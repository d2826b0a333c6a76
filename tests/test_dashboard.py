"""The Grafana dashboard queries only metrics the worker exposes (checked here against a fully
built registry; `test_metrics_e2e` checks a live worker too), the checker itself catches a
missing metric, and the worker's metric families lint clean and follow the conventions."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CollectorRegistry, generate_latest

from alerting.outcomes import OutcomeTracker
from churnwatch.infra.runtime.metrics import LATENCY_BUCKETS, IngestMetrics, Metrics
from online_models.model import ChurnModel
from online_models.quality import ProgressiveValidation
from streams.lag import LagGauge, Partition, consumer_lags, partition_lags
from tests.support.promql_names import (
    by_process,
    dashboard_queries,
    metric_names,
    missing_metrics,
)
from tests.support.promtool import promtool_problems

DASHBOARD = Path(__file__).parent.parent / "deploy/grafana/dashboards/churnwatch.json"


def ingest_exposition() -> str:
    """Every family the HTTP ingest registers, each label set it uses once."""
    metrics = IngestMetrics(CollectorRegistry())
    metrics.requests.labels("200").inc()
    metrics.accepted.labels("feed").inc()
    metrics.rejected.labels("feed", "ts").inc()
    metrics.refused.labels("feed", "429").inc()
    metrics.latency.observe(0.01)
    return generate_latest(metrics.registry).decode()


def worker_exposition() -> str:
    """Every family a worker registers (the pipeline adds model quality and outcomes)."""
    metrics = Metrics(CollectorRegistry())
    ProgressiveValidation(ChurnModel(), metrics.registry)
    OutcomeTracker(None, registry=metrics.registry)
    return generate_latest(metrics.registry).decode()


@pytest.mark.parametrize("expr,names", [
    ('sum by (type, outcome) (rate(churnwatch_events_total{instance=~"$instance"}'
     '[$__rate_interval]))', {"churnwatch_events_total"}),
    ("histogram_quantile(0.99, sum by (le, stage) (rate(a_seconds_bucket[5m])))",
     {"a_seconds_bucket"}),
    ('x_total{job="not_a_metric", path=~"a{1}[b]"} / on(instance) group_left(version) '
     "y_info offset 1h", {"x_total", "y_info"}),
    ("sum without (le) (z[1h:5m]) > bool 1e3 and max(w) or inf - ${var} * .5",
     {"z", "w"}),
    ("topk(3, sum(rate(v_total[5m])) by (rule))", {"v_total"}),
])
def test_metric_names_skip_functions_matchers_clauses_and_ranges(expr: str,
                                                                 names: set[str]) -> None:
    assert metric_names(expr) == names


def test_shipped_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 20
    assert missing_metrics(dashboard, worker_exposition() + ingest_exposition()) == {}
    queried = set().union(*map(metric_names, queries))
    for family in ("churnwatch_ingest_requests_total", "churnwatch_ingest_events_accepted_total",
                   "churnwatch_ingest_events_rejected_total",
                   "churnwatch_ingest_events_refused_total",
                   "churnwatch_ingest_request_duration_seconds_bucket",
                   "churnwatch_ingest_in_flight_requests"):
        assert family in queried, family
    for family in ("churnwatch_events_total", "churnwatch_dlq_records_total",
                   "churnwatch_consumer_lag_records", "churnwatch_stage_duration_seconds_bucket",
                   "churnwatch_event_to_alert_seconds_bucket", "churnwatch_alerts_total",
                   "churnwatch_actions_total", "churnwatch_model_roc_auc",
                   "churnwatch_model_drifts_total", "churnwatch_redis_errors_total",
                   "churnwatch_ruleset_info", "churnwatch_model_info"):
        assert family in queried, family


def test_checker_reports_a_metric_the_worker_does_not_expose() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["targets"].append({"refId": "Z", "expr": (
        'sum(rate(churnwatch_not_a_metric_total{kind="churnwatch_events_total"}[5m]))'
        " / churnwatch_events_bucket")})
    missing = missing_metrics(broken, worker_exposition() + ingest_exposition())
    assert list(missing.values()) == [{"churnwatch_not_a_metric_total",
                                       "churnwatch_events_bucket"}]
    nested = copy.deepcopy(dashboard)
    nested["panels"][0]["panels"] = [{"targets": [{"expr": "churnwatch_typo_total"}]}]
    assert list(missing_metrics(nested, worker_exposition() + ingest_exposition()).values()) == [
        {"churnwatch_typo_total"}]


def test_promtool_check_catches_a_lint_problem() -> None:
    bad = "# HELP cw_seconds x\n# TYPE cw_seconds counter\ncw_seconds 1\n"
    assert any("_total" in p for p in promtool_problems(bad))
    assert promtool_problems("# HELP cw_total x\n# TYPE cw_total counter\ncw_total 1\n") == []


def test_ingest_panels_query_only_what_the_ingest_exposes() -> None:
    """The ingest runs as its own process: its panels must not need a worker's families."""
    parts = by_process(json.loads(DASHBOARD.read_text()))
    ingest = parts["ingest"]
    assert len(ingest["panels"]) == 5 and len(ingest["templating"]["list"]) == 1  # row + 4
    assert missing_metrics(ingest, ingest_exposition()) == {}
    assert missing_metrics(parts["worker"], worker_exposition()) == {}
    assert all("$ingest" in q for q in list(dashboard_queries(ingest))[:-1])
    assert promtool_problems(ingest_exposition()) == []


def test_worker_families_lint_clean_and_follow_conventions() -> None:
    text = worker_exposition()
    assert promtool_problems(text) == []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name.startswith("churnwatch_"), name
            assert name.endswith("_total") == (kind == "counter"), name
    assert LATENCY_BUCKETS[:10] == tuple(n / 1000 for n in range(1, 11))  # 1 ms steps
    assert LATENCY_BUCKETS[-1] >= 10


def test_lag_from_fetch_high_watermarks_and_processed_or_committed_offsets() -> None:
    tps = [Partition("churn.events", p) for p in range(4)]
    high = {tps[0]: 100, tps[1]: 50, tps[2]: None, tps[3]: 7}
    lags = partition_lags(tps, high.get, processed={("churn.events", 0): 60},
                          committed={tps[0]: 40, tps[1]: 50, tps[3]: None})
    assert lags == {tps[0]: 40, tps[1]: 0, tps[3]: 7}  # unknown high watermark: left out

    metrics = Metrics(CollectorRegistry())
    gauge = LagGauge(metrics.consumer_lag)
    gauge.update(lags)
    sample = metrics.registry.get_sample_value
    assert sample("churnwatch_consumer_lag_records",
                  {"topic": "churn.events", "partition": "0"}) == 40
    gauge.update({tps[1]: 3})  # partitions 0 and 3 were revoked
    assert sample("churnwatch_consumer_lag_records",
                  {"topic": "churn.events", "partition": "0"}) is None
    assert sample("churnwatch_consumer_lag_records",
                  {"topic": "churn.events", "partition": "1"}) == 3


class _Consumer:
    """The parts of a Faust consumer the lag reads."""

    def __init__(self, started: bool = True) -> None:
        self.started = started
        self._committed_offset = {Partition("churn.events", 0): 5}

    def assignment(self) -> set[Partition]:
        if not self.started:
            raise ConsumerNotStarted("not yet")
        return {Partition("churn.events", 0), Partition("churn.events", 1),
                Partition("churn.alerts", 0)}

    def highwater(self, tp: Partition) -> int:
        if tp.partition == 1:
            raise AssertionError("Partition is not assigned")  # aiokafka, mid-rebalance
        return 9


def test_consumer_lags_of_a_faust_consumer() -> None:
    assert consumer_lags(_Consumer(), "churn.events", {}) == {Partition("churn.events", 0): 4}
    assert consumer_lags(_Consumer(started=False), "churn.events", {}) == {}


def test_version_info_gauges_keep_one_series() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_version(metrics.ruleset, "default-2")
    metrics.set_version(metrics.ruleset, "strict-2", "default-2")
    sample = metrics.registry.get_sample_value
    assert sample("churnwatch_ruleset_info", {"version": "strict-2"}) == 1
    assert sample("churnwatch_ruleset_info", {"version": "default-2"}) is None
