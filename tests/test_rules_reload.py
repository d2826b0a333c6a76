"""Hot reload on a running worker: `churnwatch rules push` changes which alerts fire, every
alert carries the ruleset version that decided it, and an invalid ruleset is refused."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
import pytest

from tests.support.stream_feed import Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def _strict_rules(tmp_path: Path) -> Path:
    """The default rules with seed_high_risk needing all 3 indicators."""
    text = resources.files("rules").joinpath("default.toml").read_text()
    text = text.replace('version = "default-3"', 'version = "strict-2"')
    text = text.replace('at_least = 2\nseverity = "high"', 'at_least = 3\nseverity = "high"', 1)
    path = tmp_path / "strict.toml"
    path.write_text(text)
    return path


def _send(worker: Worker, feed: Feed, path: Path) -> None:
    out = worker.cli("replay", str(feed.write(path)))
    assert out.returncode == 0, out.stderr.decode()
    worker.wait_caught_up()


def test_push_switches_running_worker(worker: Worker, tmp_path: Path) -> None:
    worker.start()
    before = Feed()
    before.logins("+447700900031", 20, 1)
    before.complaints("+447700900031", 2)
    _send(worker, before, tmp_path / "a.ndjson")

    out = worker.cli("rules", "push", str(_strict_rules(tmp_path)))
    assert out.returncode == 0, out.stderr.decode()
    worker.wait_for(lambda: worker.metric("churnwatch_ruleset_info", version="strict-2") == 1,
                    what="the worker to switch to strict-2")
    assert worker.metric("churnwatch_ruleset_info", version="default-3") is None  # dropped

    after = Feed()
    after.logins("+447700900032", 20, 1)  # 2 of 3: no longer enough
    after.complaints("+447700900032", 2)
    after.spend("+447700900033", [100.0, 80.0, 64.0, 51.2])  # all 3
    after.logins("+447700900033", 20, 0)
    after.complaints("+447700900033", 2)
    _send(worker, after, tmp_path / "b.ndjson")

    versions = {a["subscriber_id"]: a["ruleset_version"] for a in worker.alerts()}
    assert versions == {"+447700900031": "default-3", "+447700900033": "strict-2"}


def test_invalid_ruleset_is_refused_and_never_replaces_the_active_one(
        worker: Worker, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[indicators.x]\nwhen = "logins_7d >"\n[rules.r]\nof = ["x"]\n'
                   'severity = "high"\n')
    out = worker.cli("rules", "push", str(bad))
    assert out.returncode == 1
    message = out.stderr.decode()
    assert str(bad) in message and "indicators.x.when" in message and "Fix" in message
    check = worker.cli("rules", "check", str(bad), "--json")
    assert check.returncode == 1
    ok = worker.cli("rules", "check", str(_strict_rules(tmp_path)), "--json")
    assert orjson.loads(ok.stdout)["version"] == "strict-2"
    import redis

    assert redis.Redis.from_url(worker.redis_url).get("cw:rules:active") is None
