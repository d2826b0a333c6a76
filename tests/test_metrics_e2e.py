"""A live worker fed events of every type (subscriber ids are phone numbers in several
formats), invalid, late and duplicate records, an alert and its outcome: its /metrics passes
`promtool check metrics`, has every metric the Grafana dashboard queries, and neither its
metrics nor its logs (JSON lines, as stderr is not a terminal) contain a phone number or the
webhook secret."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import orjson
import pytest

from churnwatch.core.events import EVENT_TYPES
from churnwatch.dev.embedded import free_port
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.feeds import DAY
from tests.support.promql_names import by_process, exposed_names, missing_metrics
from tests.support.promtool import promtool, promtool_problems
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).parent.parent / "deploy/grafana/dashboards/churnwatch.json"
SECRET = "whsec_c2VjcmV0LWZvci10aGUtbWV0cmljcy10ZXN0"
ALERTED = "+44 7700 900101"
PHONES = [ALERTED, "+447700900102", "07700 900103", "415-555-0104", "415.555.0105",
          "0044 7700 900106", "+1-415-555-0107"]
REJECTED = "+44 7700 900199 {x}"  # braces are not allowed in a subscriber id: dead-lettered


def _feed() -> Feed:
    feed = Feed()
    feed.logins(ALERTED, 20, 1)
    feed.complaints(ALERTED, 2)  # login drop + complaints: the 2-of-3 rule alerts
    subs = PHONES[1:]
    feed.spend(subs[0], [100.0, 90.0, 80.0, 70.0])
    feed.add(subs[1], "usage", NOW - DAY, data_mb=120.0, voice_min=3.0, sms=1)
    feed.add(subs[2], "plan_change", NOW - DAY, plan="basic", monthly_fee=9.5)
    feed.add(subs[3], "profile", NOW - 2 * DAY, plan="basic", tenure_months=14)
    feed.add(subs[4], "login", NOW - DAY, channel="web")
    feed.add(subs[4], "churn", NOW, reason="price")
    feed.add(subs[5], "usage", NOW - DAY, data_mb=5.0)
    feed.add(subs[5], "active", NOW)
    return feed


def _second_feed(first: Feed, alert: dict) -> bytes:
    """An outcome of the alert, a duplicate, a late event and two invalid records."""
    sub = PHONES[1]
    late = {"event_id": "late-1", "subscriber_id": sub, "type": "login", "ts": NOW - 60 * DAY}
    outcome = {"event_id": "outcome-1", "subscriber_id": ALERTED, "type": "outcome",
               "ts": NOW + 3600_000, "alert_id": alert["alert_id"], "result": "accepted"}
    bad_id = {"event_id": "bad-1", "subscriber_id": REJECTED, "type": "active", "ts": NOW}
    again = next(e for e in first.events if e["type"] == "complaint")
    lines = [orjson.dumps(e) for e in (again, late, outcome, bad_id)]
    return b"\n".join([*lines, b"{not json " + PHONES[3].encode()]) + b"\n"


def _scrape(worker: Worker) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics",
                                  timeout=10).read().decode()


def _variants(phone: str) -> set[str]:
    digits = re.sub(r"\D", "", phone)
    return {phone, digits, "+" + digits, digits.removeprefix("00"),
            "+" + digits.removeprefix("00"), "0" + digits[-10:]}


def test_live_metrics_lint_dashboard_and_no_phone_numbers(broker, redis_url,
                                                          tmp_path: Path) -> None:
    promtool()
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_LOG_LEVEL="debug",
                    CHURNWATCH_WORK_QUEUES="true", CHURNWATCH_WEBHOOK_SECRET=SECRET,
                    CHURNWATCH_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hook",
                    CHURNWATCH_WEBHOOK_MAX_ATTEMPTS="2", CHURNWATCH_SILENCE_INTERVAL_S="1",
                    CHURNWATCH_MODEL_HISTORY_DAYS="0")  # snapshots from the first event on
    try:
        worker.start()
        first = _feed()
        assert worker.cli("replay", str(first.write(tmp_path / "a.ndjson"))).returncode == 0
        worker.wait_caught_up()
        worker.wait_for(lambda: len(worker.alerts()) == 1, timeout=30, what="the alert")
        (tmp_path / "b.ndjson").write_bytes(_second_feed(first, worker.alerts()[0]))
        assert worker.cli("replay", str(tmp_path / "b.ndjson")).returncode == 0
        worker.wait_caught_up()
        worker.wait_for(lambda: worker.metric("churnwatch_outcomes_total",
                                              result="accepted") is not None,
                        timeout=30, what="the outcome to be counted")
        worker.wait_for(lambda: all(worker.metric("churnwatch_consumer_lag_records",
                                                  partition=str(p)) == 0 for p in (0, 1)),
                        timeout=30, what="the lag gauge to show 0 on both partitions")
        worker.wait_for(lambda: worker.metric("churnwatch_model_labels_total", label="churn"),
                        timeout=30, what="the learner to learn the churn label")
        worker.wait_for(lambda: worker.metric("churnwatch_silence_sweeps_total",
                                              result="ok") is not None,
                        timeout=30, what="a silence sweep")
        text = _scrape(worker)
    finally:
        worker.stop()

    assert promtool_problems(text) == []
    assert {"process_resident_memory_bytes", "python_gc_collections_total"} <= exposed_names(text)

    dashboard = json.loads(DASHBOARD.read_text())
    assert missing_metrics(by_process(dashboard)["worker"], text) == {}

    def value(name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels else " ")) and all(
                    f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no sample {name} {labels}")

    for kind in EVENT_TYPES:
        assert value("churnwatch_events_total", type=kind, outcome="applied") >= 1, kind
    assert value("churnwatch_events_total", type="complaint", outcome="duplicate") == 1
    assert value("churnwatch_events_total", type="login", outcome="late") == 1
    assert value("churnwatch_dlq_records_total", kind="invalid") == 2
    assert value("churnwatch_dlq_records_total", kind="late") == 1
    assert value("churnwatch_dlq_records_total", kind="webhook") == 1
    assert value("churnwatch_alerts_total", severity="high", rule="seed_high_risk") == 1
    actions = len(worker.alerts()[0]["actions"])
    assert actions >= 1
    for sink in ("kafka", "jsonl", "work_queue"):
        assert value("churnwatch_actions_total", sink=sink, result="sent") == actions, sink
    assert value("churnwatch_actions_total", sink="webhook", result="dead_letter") == actions
    assert value("churnwatch_webhook_retries_total") == 1
    assert value("churnwatch_event_to_alert_seconds_count") == 1
    assert value("churnwatch_event_loop_lag_seconds_count") >= 1  # the loop watch runs
    for stage in ("decode", "features", "decide", "commit", "publish", "outcomes", "labels"):
        assert value("churnwatch_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert value("churnwatch_model_labels_total", label="churn") == 1
    assert value("churnwatch_ruleset_info", version="default-3") == 1

    logs = worker.log_path.read_text()
    records = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert all({"event", "level", "timestamp", "logger"} <= r.keys() for r in records)
    assert any(r["logger"] == "churnwatch.worker" and "metrics on" in r["event"]
               for r in records)
    assert any(r["logger"] == "churnwatch.webhook" for r in records)  # the give-up warning
    assert SECRET not in logs
    for phone in [*PHONES, REJECTED]:
        for variant in _variants(phone):
            assert variant not in logs, variant
            assert variant not in text, variant
