"""End to end on the real broker, a real `churnwatch worker` and a real redis-server:
the operators' indicators and the 2-of-3 rule at their thresholds, duplicates, dead letters,
and `replay` + `inspect` against a hand computation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from churnwatch.infra.config import DLQ_TOPIC
from tests.support.feeds import DAY
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration





def _replay(worker: Worker, path: Path) -> None:
    out = worker.cli("replay", str(path), "--json")
    assert out.returncode == 0, out.stderr.decode()
    assert orjson.loads(out.stdout)["sent"] > 0


def _seed_alerts(worker: Worker) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for alert in worker.alerts():
        out.setdefault(alert["subscriber_id"], []).append(alert)
    return out


def test_operator_rule_at_its_thresholds(any_worker: Worker, tmp_path: Path) -> None:
    worker = any_worker
    feed = Feed()
    decline = [100.0, 80.0, 64.0, 51.2]  # exactly -20 % each month
    # login_drop + complaints: 20 logins before, 1 in the last week, 2 complaints -> alert
    feed.logins("+447700900001", 20, 1)
    feed.complaints("+447700900001", 2)
    # one login short of the baseline (19): only complaints hold -> no alert
    feed.logins("+447700900002", 19, 1)
    feed.complaints("+447700900002", 2)
    # two logins in the last week: login_drop false -> no alert
    feed.logins("+447700900003", 20, 2)
    feed.complaints("+447700900003", 2)
    # spend decline at exactly 0.8 each month + complaints -> alert
    feed.spend("+447700900004", decline)
    feed.complaints("+447700900004", 2)
    # April one cent above 0.8 x March: no decline; complaints alone -> no alert
    feed.spend("+447700900005", [100.0, 80.0, 64.0, 51.21])
    feed.complaints("+447700900005", 2)
    # decline + login drop, one complaint (not enough) -> alert via the other two
    feed.spend("+447700900006", decline)
    feed.logins("+447700900006", 20, 0)
    feed.complaints("+447700900006", 1)
    # the other complaint exactly 30 days before the one scored (NOW - 1 h): outside the
    # half-open (now - 30 d, now] -> only 1 indicator
    feed.logins("+447700900007", 20, 1)
    feed.complaints("+447700900007", 1)
    feed.add("+447700900007", "complaint", NOW - 3600_000 - 30 * DAY, category="service")
    # all three, and more complaints after the first alert: one alert (7-day cooldown)
    feed.spend("+447700900008", decline)
    feed.logins("+447700900008", 20, 0)
    feed.complaints("+447700900008", 4)

    worker.start()
    _replay(worker, feed.write(tmp_path / "events.ndjson"))
    worker.wait_caught_up()

    alerts = _seed_alerts(worker)
    assert sorted(alerts) == ["+447700900001", "+447700900004", "+447700900006",
                              "+447700900008"], worker.log_path.read_text()[-4000:]
    for sub, subs_alerts in alerts.items():
        assert len(subs_alerts) == 1, subs_alerts
        alert = subs_alerts[0]
        assert alert["severity"] == "high" and alert["rules"] == ["seed_high_risk"]
        assert alert["ruleset_version"] == "default-3"
        # personal_offer and sales_follow_up are alternatives (group "save"): the first while
        # it is explored (alerting/allocate.py)
        assert {a["id"] for a in alert["actions"]} >= {"personal_offer"}
        assert "sales_follow_up" not in {a["id"] for a in alert["actions"]}
    fired = {r["indicator"] for r in alerts["+447700900004"][0]["reasons"]
             if r["kind"] == "indicator"}
    assert fired == {"spend_decline", "complaints"}
    assert alerts["+447700900004"][0]["reasons"][0]["values"] == {
        "spend_m1": 51.2, "spend_m2": 64.0, "spend_m3": 80.0, "spend_m4": 100.0}
    # the alert fires on the event that completed the second indicator
    second_complaint = [e for e in feed.events if e["subscriber_id"] == "+447700900001"
                        and e["type"] == "complaint"][1]
    assert alerts["+447700900001"][0]["event_id"] == second_complaint["event_id"]
    assert alerts["+447700900001"][0]["ts"] == second_complaint["ts"]

    # every applied event was scored
    assert len(worker.scores()) == len(feed.events)


def test_duplicates_change_nothing_and_invalid_events_go_to_the_dlq(
        worker: Worker, tmp_path: Path) -> None:
    feed = Feed()
    feed.logins("+447700900011", 20, 1)
    feed.complaints("+447700900011", 2)
    path = feed.write(tmp_path / "events.ndjson")
    bad = [b'{"event_id":"x1","subscriber_id":"+447700900011","type":"spend","ts":1778400000000,'
           b'"amount":-3}',
           b'{"event_id":"x2","subscriber_id":"","type":"login","ts":1778400000000}',
           b'{"event_id":"x3","subscriber_id":"+447700900011","type":"teleport","ts":1778400000000}',
           b'not json at all']
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(path.read_bytes() + b"\n".join(bad) + b"\n")

    worker.start()
    _replay(worker, mixed)
    worker.wait_caught_up()
    before = worker.cli("inspect", "+447700900011", "--json")
    first_alerts = worker.alerts()
    _replay(worker, path)  # every event again: all duplicates
    worker.wait_caught_up()

    assert len(first_alerts) == 1
    assert worker.alerts() == first_alerts
    after = worker.cli("inspect", "+447700900011", "--json")
    assert orjson.loads(after.stdout) == orjson.loads(before.stdout)

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(worker.broker.bootstrap,
                                                               DLQ_TOPIC))]
    invalid = [letter for letter in letters if letter["kind"] == "invalid"]
    late = [letter for letter in letters if letter["kind"] == "late"]
    reasons = sorted(letter["reason"] for letter in invalid)
    assert len(invalid) == 4
    # re-sent events older than the subscriber's clock minus 7 days cannot be told from late
    # ones (their ids have expired): they are dead-lettered as late and change nothing either
    clock = max(e["ts"] for e in feed.events)
    assert len(late) == sum(e["ts"] < clock - 7 * DAY for e in feed.events) == 20
    assert any("amount" in r for r in reasons)
    assert any("subscriber_id" in r for r in reasons)
    assert any("teleport" in r for r in reasons)
    assert any("malformed" in r for r in reasons)
    for letter in letters:
        assert letter["topic"] == "churn.events" and letter["offset"] >= 0
        assert letter["partition"] in (0, 1)
    # the valid events of the same messages were processed: 20 + 1 logins, 2 complaints
    report = orjson.loads(after.stdout)
    assert report["features"]["logins_prev28"] == 20
    assert report["features"]["complaints_30d"] == 2


def test_replay_then_inspect_shows_hand_computed_features(worker: Worker, tmp_path: Path) -> None:
    sub = "+447700900021"
    feed = Feed()
    feed.spend(sub, [120.0, 90.5, 60.25, 30.0])  # Jan..Apr
    feed.add(sub, "spend", NOW - 5 * DAY, amount=12.5)  # May, inside the last 30 days
    feed.add(sub, "spend", NOW - 20 * DAY, amount=7.5)  # April 20, inside the last 30 days
    feed.logins(sub, 6, 2)
    feed.complaints(sub, 1)
    feed.add(sub, "usage", NOW - DAY, data_mb=250.5, voice_min=12.0)
    feed.add(sub, "usage", NOW - 10 * DAY, data_mb=100.0, voice_min=3.0)
    feed.add(sub, "plan_change", NOW - 40 * DAY, plan="max", monthly_fee=45.0)
    feed.add(sub, "plan_change", NOW - 4 * DAY, plan="mini", monthly_fee=25.0)
    feed.add(sub, "profile", NOW - 60 * DAY, plan="max", tenure_months=18,
             attrs={"contract_months": 24})
    worker.start()
    _replay(worker, feed.write(tmp_path / "events.ndjson"))
    worker.wait_caught_up()
    out = worker.cli("inspect", "0044 7700 900021", "--json")
    assert out.returncode == 0, out.stderr.decode()
    report = orjson.loads(out.stdout)
    f = report["features"]
    assert report["subscriber_id"] == sub
    assert (f["spend_m1"], f["spend_m2"], f["spend_m3"], f["spend_m4"]) == (37.5, 60.25, 90.5,
                                                                          120.0)
    assert f["spend_m0"] == 12.5
    assert (f["spend_count_30d"], f["spend_amount_30d"], f["recency_days"]) == (2, 20.0, 5)
    assert (f["logins_7d"], f["logins_prev28"], f["days_since_login"]) == (2, 6, 2)
    assert (f["complaints_30d"], f["complaints_network_30d"]) == (1, 1)
    assert (f["data_mb_7d"], f["data_mb_prev28"]) == (250.5, 100.0)
    assert (f["voice_min_7d"], f["voice_min_prev28"]) == (12.0, 3.0)
    assert (f["monthly_fee"], f["fee_delta"], f["days_since_plan_change"]) == (25.0, -20.0, 4)
    assert f["tenure_months"] == 18 + 2  # profile in March, now in May
    assert report["attrs"] == {"contract_months": 24}
    # 120 -> 90.5 -> 60.25 -> 37.5: each month at most 0.8x the one before
    assert report["indicators"] == {"spend_decline": True, "login_drop": False,
                                    "complaints": False, "plan_downgrade": True,
                                    "going_quiet": False, "model_risk": False,
                                    "model_confirmed": False}
    assert report["segment"] == "regular"
