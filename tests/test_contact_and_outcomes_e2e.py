"""Through a real worker: a do-not-contact subscriber gets only internal actions (the rest is
listed as suppressed), and an `outcome` event is counted against the alert's rule, segment
and actions."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def test_do_not_contact_and_outcomes(worker: Worker, tmp_path: Path) -> None:
    out = worker.cli("dnc", "add", "0044 7700 900071")
    assert out.returncode == 0, out.stderr.decode()
    assert orjson.loads(worker.cli("dnc", "list", "--json").stdout) == ["+447700900071"]
    feed = Feed()
    for sub in ("+447700900071", "+447700900072"):
        feed.logins(sub, 20, 1)
        feed.complaints(sub, 2)
    worker.start()
    assert worker.cli("replay", str(feed.write(tmp_path / "a.ndjson"))).returncode == 0
    worker.wait_caught_up()
    alerts = {a["subscriber_id"]: a for a in worker.alerts()}
    blocked, reached = alerts["+447700900071"], alerts["+447700900072"]
    assert {a["channel"] for a in blocked["actions"]} == {"internal"}
    # personal_offer and sales_follow_up are alternatives (group "save"): each alert gets one,
    # the first in playbook order while it is explored (alerting/allocate.py)
    assert {s["id"] for s in blocked["suppressed"]} == {"personal_offer", "care_callback"}
    assert {s["reason"] for s in blocked["suppressed"]} == {"do-not-contact"}
    assert reached["suppressed"] == []
    assert {a["id"] for a in reached["actions"]} >= {"personal_offer", "care_callback"}
    assert "sales_follow_up" not in {a["id"] for a in reached["actions"]}
    assert reached["allocation"][0]["chosen"] == "personal_offer"

    outcome = Feed()
    outcome.add("+447700900072", "outcome", NOW + 3600_000, alert_id=reached["alert_id"],
                result="accepted")
    assert worker.cli("replay", str(outcome.write(tmp_path / "b.ndjson"))).returncode == 0
    worker.wait_caught_up()
    worker.wait_for(lambda: worker.metric("churnwatch_outcomes_total", result="accepted",
                                          action="personal_offer") == 1,
                    timeout=20, what="the outcome to be counted")
    assert worker.metric("churnwatch_outcomes_total", result="accepted",
                         action="care_callback", rule="seed_high_risk",
                         segment=reached["segment"]) == 1
