"""Feeds are principals of the HTTP ingest (streams/ingest_feeds.py): the tokens file grants
each feed its event types (labels and outcomes only explicitly) and optionally subscriber id
prefixes; an event outside the grant is refused alone (403 in the response, a `forbidden`
dead letter naming the feed). Event ids are namespaced by feed, so one feed cannot suppress
another's event; one outcome per (alert, action), through a real worker, the web API and the
ingest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from churnwatch.core.errors import ConfigError
from churnwatch.dev.embedded import EmbeddedBroker
from churnwatch.infra.config import DLQ_TOPIC, EVENTS_TOPIC
from streams.ingest_auth import TokenStore
from streams.ingest_feeds import DEFAULT_TYPES, namespaced_id
from tests.support.ingest import (  # noqa: F401
    JSON,
    TS,
    _client,
    _settings,
    _start_ingest,
    _stop,
    topics,
)
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration

GRANTS = """\
[tokens]
"app-token-0001" = "app"
"crm-token-0002" = "crm"

[feeds.crm]
types = ["outcome", "login"]
subscriber_prefixes = ["+4477009001"]
"""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _ev(i: int, type_: str, sub: str = "+447700900101", **fields: object) -> dict:
    return {"event_id": f"ev-{i}", "subscriber_id": sub, "type": type_, "ts": TS + i, **fields}


def test_grants_refuse_events_outside_them_and_dead_letter_them_with_the_feed(
        topics: EmbeddedBroker, tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(GRANTS)
    app_batch = [_ev(0, "login"), _ev(1, "churn"), _ev(2, "active"),
                 _ev(3, "outcome", alert_id="a1", result="accepted"), _ev(4, "spend", amount=3)]
    crm_batch = [_ev(5, "outcome", alert_id="a1", result="accepted"),
                 _ev(6, "outcome", "+44 7700 900201", alert_id="a2", result="declined"),
                 _ev(7, "spend", amount=1), _ev(8, "login", "0044 7700 900102")]

    async def main() -> list[dict]:
        async with _client(_settings(topics, tmp_path, ingest_tokens_file=path)) as client:
            out = []
            for token, batch in (("app-token-0001", app_batch), ("crm-token-0002", crm_batch)):
                r = await client.post("/v1/events", data=orjson.dumps(batch),
                                      headers=_auth(token))
                assert r.status == 200
                out.append(await r.json())
            return out

    app, crm = asyncio.run(main())
    assert app["accepted"] == 2 and crm["accepted"] == 2
    assert [(r["index"], r["kind"], r["status"]) for r in app["rejected"]] == [
        (1, "forbidden", 403), (2, "forbidden", 403), (3, "forbidden", 403)]
    assert "'churn'" in app["rejected"][0]["reason"]
    assert [(r["index"], r["kind"], r["status"]) for r in crm["rejected"]] == [
        (1, "forbidden", 403), (2, "forbidden", 403)]
    assert "subscriber_prefixes" in crm["rejected"][0]["reason"]

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(topics.bootstrap, DLQ_TOPIC))]
    assert sorted((d["topic"], d["index"], d["kind"]) for d in letters) == [
        ("http:app", 1, "forbidden"), ("http:app", 2, "forbidden"), ("http:app", 3, "forbidden"),
        ("http:crm", 1, "forbidden"), ("http:crm", 2, "forbidden")]
    assert all(f"feed {d['topic'][5:]!r}" in d["reason"] for d in letters)

    produced = [ev for m in asyncio.run(read_topic(topics.bootstrap, EVENTS_TOPIC))
                for ev in orjson.loads(m)]
    assert sorted((ev["feed"], ev["event_id"], ev["type"]) for ev in produced) == [
        ("app", "app:ev-0", "login"), ("app", "app:ev-4", "spend"),
        ("crm", "crm:ev-5", "outcome"), ("crm", "crm:ev-8", "login")]


def test_tokens_file_grants_are_validated_and_old_files_get_the_default(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text('[tokens]\n"t-old-1" = "billing"\n')
    store = TokenStore(old)
    assert store.feed_for("Bearer t-old-1") == "billing"
    assert store.grant("billing").types == frozenset(DEFAULT_TYPES)
    assert {"churn", "active", "outcome"}.isdisjoint(DEFAULT_TYPES)
    as_json = tmp_path / "t.json"
    as_json.write_text('{"tokens": {"t-j": "crm"}, "feeds": {"crm": {"types": ["churn"]}}}')
    assert TokenStore(as_json).grant("crm").types == frozenset({"churn"})
    for bad, message in (('types = ["teleport"]', "unknown event types"),
                         ('type = ["login"]', "[feeds.crm]"),
                         ('subscriber_prefixes = [""]', "empty subscriber prefix")):
        path = tmp_path / "bad.toml"
        path.write_text(f'[tokens]\n"t" = "crm"\n[feeds.crm]\n{bad}\n')
        with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
            TokenStore(path)


def test_namespaced_ids_differ_per_feed_fit_the_contract_and_are_deterministic() -> None:
    assert namespaced_id("app", "ev-1") == "app:ev-1" != namespaced_id("crm", "ev-1")
    long = namespaced_id("f" * 64, "x" * 128)
    assert len(long) <= 128 and long.startswith("f" * 64 + ":#")
    assert long == namespaced_id("f" * 64, "x" * 128) != namespaced_id("f" * 64, "y" * 128)


def test_a_feed_cannot_suppress_another_feeds_event_and_outcomes_count_once(
        worker: Worker, tmp_path: Path) -> None:
    """Through a real worker, ingest process and Redis: feed `app` pre-sends the event id of
    feed `care`'s complaint, which is still applied; the same outcome posted 3 times to the
    web API and 3 times through the ingest is counted once; feed `app` (no grant) cannot
    send an outcome or a label."""
    sub = "+447700900031"
    feed = Feed()
    feed.logins(sub, 20, 1)
    feed.complaints(sub, 2)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[tokens]\n"app-token-0001" = "app"\n"care-token-0002" = "care"\n'
                      '[feeds.care]\ntypes = ["complaint", "outcome"]\n')
    env = dict(worker.env, CHURNWATCH_INGEST_TOKENS_FILE=str(tokens))
    proc, url = _start_ingest(env, tmp_path / "ingest.log")
    try:
        worker.start()
        care = [e for e in feed.events if e["type"] == "complaint"]
        logins = sorted((e for e in feed.events if e["type"] == "login"), key=lambda e: e["ts"])
        # app sends its logins, plus a login carrying care's first complaint id, first
        spoof = {**logins[0], "event_id": care[0]["event_id"], "ts": logins[0]["ts"] + 1}
        post = httpx.Client(base_url=url, timeout=30)
        r = post.post("/v1/events", content=orjson.dumps([*logins, spoof]),
                      headers=_auth("app-token-0001"))
        assert r.status_code == 200 and r.json()["accepted"] == len(logins) + 1
        r = post.post("/v1/events", content=orjson.dumps(care), headers=_auth("care-token-0002"))
        assert r.status_code == 200 and r.json()["accepted"] == len(care)
        worker.wait_caught_up()
        assert worker.metric("churnwatch_events_total", type="complaint",
                             outcome="applied") == len(care)
        worker.wait_for(worker.alerts, timeout=30, what="the alert")
        alerts = worker.alerts()
        assert [(a["subscriber_id"], a["severity"]) for a in alerts] == [(sub, "high")]
        alert = alerts[0]

        web = httpx.Client(base_url=f"http://127.0.0.1:{worker.web_port}", timeout=30,
                           headers={"Authorization": f"Bearer {worker.web_token}"})
        body = {"subscriber_id": sub, "alert_id": alert["alert_id"], "result": "accepted"}
        for _ in range(3):
            assert web.post("/api/v1/outcomes", json=body).status_code == 202
        outcome = {"subscriber_id": sub, "type": "outcome", "ts": NOW + 3600_000,
                   "alert_id": alert["alert_id"], "result": "declined"}
        for n in range(3):
            r = post.post("/v1/events", content=orjson.dumps({**outcome, "event_id": f"o{n}"}),
                          headers=_auth("care-token-0002"))
            assert r.status_code == 200 and r.json()["accepted"] == 1
        forged = [{**outcome, "event_id": "forged", "result": "accepted"},
                  {"event_id": "label", "subscriber_id": sub, "type": "churn",
                   "ts": NOW + 3600_000}]
        r = post.post("/v1/events", content=orjson.dumps(forged), headers=_auth("app-token-0001"))
        assert r.status_code == 200 and r.json()["accepted"] == 0
        assert [x["status"] for x in r.json()["rejected"]] == [403, 403]
        worker.wait_caught_up()
        worker.wait_for(lambda: worker.metric("churnwatch_outcome_duplicates_total") == 5,
                        timeout=30, what="five duplicate outcomes")
        action = alert["actions"][0]["id"]
        counted = {result: worker.metric("churnwatch_outcomes_total", result=result,
                                         action=action) for result in ("accepted", "declined")}
        assert sum(v or 0 for v in counted.values()) == 1, counted
        assert worker.metric("churnwatch_events_total", type="churn", outcome="applied") in (
            None, 0.0)
    finally:
        _stop(proc)
