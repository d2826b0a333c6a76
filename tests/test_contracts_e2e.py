"""What the code really emits matches the published contracts (docs/schemas/, docs/openapi/):
a real worker's alerts (churn.alerts, the JSONL sink, the webhook) and score records
(churn.scores, the scores JSONL file), the events the HTTP ingest accepts and produces, its
answers, and every error body of the ingest (problem+json)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from churnwatch.infra.config import (
    ALERTS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    SCORES_TOPIC,
    Settings,
)
from streams.ingest_openapi import openapi_document
from tests.support.contracts import (
    DOCS,
    assert_problem,
    assert_valid,
    assert_valid_component,
)
from tests.support.ingest import _client
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker, read_topic

INGEST = orjson.loads((DOCS / "openapi" / "ingest.json").read_bytes())
TOKEN, FEED = "contract-token-0123", "contracts"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DAY = 86_400_000


def samples() -> list[dict]:
    """One event of every type, as a feed would send them."""
    base = {"subscriber_id": "+44 7700 900555", "ts": NOW - DAY}
    kinds = [("spend", {"amount": 20, "kind": "bill"}), ("login", {"channel": "app"}),
             ("complaint", {"category": "network"}), ("usage", {"data_mb": 120.5}),
             ("plan_change", {"plan": "basic", "monthly_fee": 9.99}),
             ("profile", {"tenure_months": 30, "attrs": {"arpu": 12.0}}),
             ("churn", {}), ("active", {}), ("outcome", {"alert_id": "a1", "result": "declined"})]
    return [{"event_id": f"s{n}", **base, "type": kind, **extra}
            for n, (kind, extra) in enumerate(kinds)]


class Recorder:
    """A producer that keeps what it is given (or fails, to provoke a 503)."""

    partitions = 2

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[tuple[str, int | None, bytes]] = []
        self.fail = fail

    async def produce(self, messages: Sequence[tuple[str, int | None, bytes]]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.messages += messages


def _settings(tmp: Path, **kw: object) -> Settings:
    grants = tmp / "tokens.toml"
    grants.write_text(f'[tokens]\n"{TOKEN}" = "{FEED}"\n\n[feeds.{FEED}]\n'
                      'types = ["spend", "login", "complaint", "usage", "plan_change", '
                      '"profile", "churn", "active", "outcome"]\n')
    return Settings(partitions=2, ingest_tokens_file=grants, ingest_max_body_bytes=4096,
                    ingest_max_events=12, **kw)


async def _problem(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert_problem(status, resp.content_type, body)
    assert_valid_component(INGEST, "IngestProblem", body)
    return body


def test_the_ingest_accepts_schema_valid_events_and_answers_errors_as_problems(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, ingest_rate_per_feed=0.001, ingest_rate_burst=12)
    events = samples()
    for event in events:
        assert_valid("event", event)

    async def main() -> None:
        producer = Recorder()
        async with _client(settings, producer=producer) as client:
            resp = await client.post("/v1/events", data=orjson.dumps(events), headers=JSON)
            assert resp.status == 200
            result = await resp.json()
            assert_valid_component(INGEST, "IngestResult", result)
            assert result["accepted"] == len(events) and result["rejected"] == []
            produced = [e for topic, _, value in producer.messages if topic == EVENTS_TOPIC
                        for e in orjson.loads(value)]
            assert sorted(e["type"] for e in produced) == sorted(e["type"] for e in events)
            for event in produced:  # with the feed's stamp and the namespaced id
                assert event["feed"] == FEED and event["event_id"].startswith(f"{FEED}:")
                assert_valid("event", event)
            bad = [{**events[0], "amount": -1}, {**events[1], "type": "teleport"}]
            resp = await client.post("/v1/events", data=orjson.dumps(bad), headers=JSON)
            mixed = await resp.json()
            assert resp.status == 200 and [r["index"] for r in mixed["rejected"]] == [0, 1]
            assert_valid_component(INGEST, "IngestResult", mixed)

            await _problem(await client.post("/v1/events", data=b"{}"), 401)
            await _problem(await client.post("/v1/events", data=b"{}", headers={
                **AUTH, "Content-Type": "text/plain"}), 415)
            await _problem(await client.post("/v1/events", data=b"{}", headers={
                **JSON, "Content-Encoding": "br"}), 415)
            await _problem(await client.post("/v1/events", data=b"[" + b" " * 5000 + b"]",
                                             headers=JSON), 413)
            await _problem(await client.post("/v1/events", data=orjson.dumps(events * 2),
                                             headers=JSON), 413)
            await _problem(await client.post("/v1/events", data=b"  ", headers=JSON), 400)
            await _problem(await client.post("/v1/events", data=b"not gzip", headers={
                **JSON, "Content-Encoding": "gzip"}), 400)
            limited = await client.post("/v1/events", data=gzip.compress(orjson.dumps(events)),
                                        headers={**JSON, "Content-Encoding": "gzip"})
            assert int(limited.headers["Retry-After"]) >= 1
            assert (await _problem(limited, 429))["error"] == "rate_limited"
            for path in ("/v2/events", "/nothing"):
                await _problem(await client.get(path, headers=AUTH), 404)
            await _problem(await client.get("/v1/events", headers=AUTH), 405)
        async with _client(_settings(tmp_path), producer=Recorder(fail=True)) as client:
            down = await client.post("/v1/events", data=orjson.dumps(events), headers=JSON)
            unavailable = await _problem(down, 503)
            assert unavailable["reason"] == unavailable["detail"]
            assert int(down.headers["Retry-After"]) >= 1
            served = await (await client.get("/openapi.json")).json()
            assert served == orjson.loads(orjson.dumps(openapi_document(4096, 12)))

    asyncio.run(main())


class Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        Receiver.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_a_real_workers_alerts_and_score_records_match_the_schemas(
        broker, redis_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from churnwatch.infra.kafka.topics import create_topics

    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.bodies = []
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_PUBLISH_SCORES="true",
                    CHURNWATCH_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/hook",
                    CHURNWATCH_WEBHOOK_SECRET=SECRET)
    feed = Feed()
    for n, sub in enumerate(("+447700900071", "+447700900072", "+447700900073")):
        feed.logins(sub, 20, n % 2)  # the second keeps logging in: no login drop
        feed.spend(sub, [100, 70, 50, 30])
        feed.complaints(sub, 2)
    feed.add("+447700900074", "profile", NOW - DAY, plan="basic", tenure_months=3,
             attrs={"arpu": 9.5})
    try:
        worker.start()
        out = worker.cli("replay", str(feed.write(tmp_path / "events.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: len(Receiver.bodies) >= len(worker.alerts()) > 0, 30,
                        "the webhook")
    finally:
        worker.stop()
        server.shutdown()
    alerts = worker.alerts()
    topic_alerts = [orjson.loads(v) for v in asyncio.run(read_topic(broker.bootstrap,
                                                                    ALERTS_TOPIC))]
    scores = worker.scores()
    topic_scores = [orjson.loads(v) for v in asyncio.run(read_topic(broker.bootstrap,
                                                                    SCORES_TOPIC))]
    assert len(alerts) >= 2 and topic_alerts and len(scores) >= len(feed.events) // 2
    assert {a["alert_id"] for a in topic_alerts} == {a["alert_id"] for a in alerts}
    assert len(topic_scores) == len(scores)
    assert any(a["reasons"] and a["actions"] for a in alerts)
    for alert in alerts + topic_alerts:
        assert_valid("alert", alert)
    for record in scores + topic_scores:
        assert_valid("score", record)
    for body in Receiver.bodies:
        assert_valid("webhook", orjson.loads(body))
    for event in feed.events:
        assert_valid("event", event)
