"""Through a real worker (single Redis and Redis Cluster): alerts are registered in the
incrementality ledger, churn and renewal events decide them, the window's close counts
them, and `churnwatch effect --json`, the page's API and the metrics show the result."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from churnwatch.core.units import DAY_MS
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def _effect(worker: Worker) -> dict:
    out = worker.cli("effect", "--json", "--by", "segment")
    assert out.returncode == 0, out.stderr.decode()
    return orjson.loads(out.stdout)


def _cells(alerts: list[dict], outcome: dict[str, bool]) -> dict[tuple[str, str, str], int]:
    """(arm, action, stat) → count: the plain recomputation (n settled, k retained)."""
    expected: dict[tuple[str, str, str], int] = {}
    for alert in alerts:
        arm = "h" if alert["holdout"] else "t"
        actions = ([s["id"] for s in alert["suppressed"]] if alert["holdout"]
                   else [a["id"] for a in alert["actions"]])
        for action in actions:
            for stat, inc in (("n", 1), ("k", int(outcome[alert["subscriber_id"]]))):
                key = (arm, action, stat)
                expected[key] = expected.get(key, 0) + inc
    return expected


def test_ledger_follows_churn_and_renewals_through_a_worker(any_worker: Worker,
                                                            tmp_path: Path) -> None:
    worker = any_worker
    worker.env["CHURNWATCH_HOLDOUT_FRACTION"] = "0.5"  # a control group among 24 subscribers
    subs = [f"+4477009{k:05d}" for k in range(100, 124)]
    feed = Feed()
    for sub in subs:
        feed.logins(sub, 20, 1)
        feed.complaints(sub, 2)
    worker.start()
    assert worker.cli("replay", str(feed.write(tmp_path / "a.ndjson"))).returncode == 0
    worker.wait_caught_up()
    alerts = worker.alerts()
    assert sorted(a["subscriber_id"] for a in alerts) == subs
    held = [a for a in alerts if a["holdout"]]
    assert 4 <= len(held) <= 20
    for alert in alerts:  # the alternatives: one of them, with the reason, or all held out
        if not alert["holdout"]:
            assert alert["allocation"][0]["chosen"] == "personal_offer"
            assert "exploring" in alert["allocation"][0]["reason"]
    assert _effect(worker)["rows"] and all(r["treated"] == 0 and r["control"] == 0
                                           for r in _effect(worker)["rows"])

    # the subscribers respond: churn in the window, a renewal, nothing, churn after the window
    after, retained = Feed(), {}
    for k, alert in enumerate(alerts):
        sid, ts = alert["subscriber_id"], alert["ts"]
        kind = k % 4
        if kind == 0:
            after.add(sid, "churn", ts + 5 * DAY_MS, reason="price")
        elif kind == 1:
            after.add(sid, "active", ts + 10 * DAY_MS)
            after.add(sid, "churn", ts + 20 * DAY_MS)  # after the renewal: still retained
        elif kind == 3:
            after.add(sid, "churn", ts + 31 * DAY_MS)
        retained[sid] = kind != 0
    after.add("+447700999999", "usage", NOW + 20 * DAY_MS, data_mb=1.0)
    assert worker.cli("replay", str(after.write(tmp_path / "b.ndjson"))).returncode == 0
    worker.wait_caught_up()
    assert all(r["treated"] == 0 for r in _effect(worker)["rows"])  # windows still open

    close = Feed()  # an event past every window and its grace (30 + 2 days)
    close.add("+447700999998", "usage", NOW + 40 * DAY_MS, data_mb=1.0)
    assert worker.cli("replay", str(close.write(tmp_path / "c.ndjson"))).returncode == 0
    worker.wait_caught_up()
    report = _effect(worker)
    got: dict[tuple[str, str, str], int] = {}
    for row in report["rows"]:
        assert row["segment"] == "regular"
        for key, value in ((("t", row["action"], "n"), row["treated"]),
                           (("t", row["action"], "k"), row["treated_retained"]),
                           (("h", row["action"], "n"), row["control"]),
                           (("h", row["action"], "k"), row["control_retained"])):
            if value:
                got[key] = value
    assert got == {k: v for k, v in _cells(alerts, retained).items() if v}
    offer = next(r for r in report["rows"] if r["action"] == "personal_offer")
    # every alert that got the offer so far (the responses raised some more, still open)
    assert offer["contacts"] == sum(1 for a in worker.alerts()
                                    if "personal_offer" in {x["id"] for x in a["actions"]})
    assert offer["contacts"] >= len(alerts) - len(held)
    assert offer["offer_cost"] == 15.0 * offer["contacts"]

    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}/api/v1/effect?by=segment",
                                     headers={"Authorization": f"Bearer {worker.web_token}"})
    page = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert page["rows"] == report["rows"]

    time.sleep(5.5)  # the gauges are read back at most every 5 s, when a batch starts
    tick = Feed()
    tick.add("+447700999997", "usage", NOW + 41 * DAY_MS, data_mb=1.0)
    assert worker.cli("replay", str(tick.write(tmp_path / "d.ndjson"))).returncode == 0
    worker.wait_caught_up()
    worker.wait_for(lambda: worker.metric("churnwatch_effect_outcomes", arm="treated",
                                          action="personal_offer") == offer["treated"],
                    timeout=20, what="the ledger's gauges")
