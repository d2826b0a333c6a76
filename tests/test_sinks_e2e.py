"""The worker delivers alerts to a signed webhook and to per-team Redis Stream work queues."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import redis
from standardwebhooks import Webhook

from alerting.webhook import verify_signature
from tests.support.stream_feed import Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_alert_reaches_webhook_and_team_queues(broker, redis_url, tmp_path: Path) -> None:
    import asyncio

    from churnwatch.infra.config import (
        ALERTS_TOPIC,
        DLQ_TOPIC,
        EVENTS_TOPIC,
        SCORES_TOPIC,
    )
    from churnwatch.infra.kafka.topics import create_topics

    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    worker = Worker(broker, redis_url, tmp_path,
                    CHURNWATCH_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/hook",
                    CHURNWATCH_WEBHOOK_SECRET=SECRET, CHURNWATCH_WORK_QUEUES="true")
    feed = Feed()
    feed.logins("+447700900061", 20, 1)
    feed.complaints("+447700900061", 2)
    try:
        worker.start()
        out = worker.cli("replay", str(feed.write(tmp_path / "events.ndjson")))
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_caught_up()
        worker.wait_for(lambda: len(Receiver.received) == 1, timeout=30, what="the webhook")
    finally:
        worker.stop()
        server.shutdown()
    headers, body = Receiver.received[0]
    message = Webhook(SECRET).verify(body, headers)  # the official Standard Webhooks library
    assert message["type"] == "churn.alert" and message["timestamp"].endswith("Z")
    alert = message["data"]
    assert headers["webhook-id"] == alert["alert_id"]
    assert verify_signature(SECRET, headers, body)
    assert not verify_signature(SECRET, headers, body.replace(b"high", b"low"))
    client = redis.Redis.from_url(redis_url)
    teams = {a["team"] for a in alert["actions"]}
    # personal_offer (retention-offers) and sales_follow_up (sales) are alternatives: one of them
    assert teams >= {"retention-offers", "customer-care"} and "sales" not in teams
    for team in teams:
        entries = client.xrange(f"cw:queue:{team}")
        assert [e[1][b"alert_id"].decode() for e in entries].count(alert["alert_id"]) == sum(
            a["team"] == team for a in alert["actions"])
        for _, entry in entries:  # the action itself, and where to read the whole alert
            action = orjson.loads(entry[b"action"])
            assert action in alert["actions"] and action["team"] == team
            sid = entry[b"subscriber_id"].decode()
            recent = [orjson.loads(x) for x in client.lrange(f"cw:{{{sid}}}:alerts", 0, -1)]
            assert alert in recent
