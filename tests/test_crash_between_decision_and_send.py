"""A worker killed between deciding an alert and delivering it (or between delivering and
marking it delivered) neither loses nor repeats the action after a restart."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import redis

from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.stream_feed import Feed
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that performs each action once per webhook-id, as integrators do."""

    ids: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        self.rfile.read(int(self.headers["content-length"]))
        Receiver.ids.append(self.headers["webhook-id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("point", ["after_commit", "after_send"])
def test_killed_between_decision_and_delivery(point: str, broker, redis_url,
                                              tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.ids = []
    marker = tmp_path / "failpoint-fired"
    worker = Worker(broker, redis_url, tmp_path, CHURNWATCH_WORK_QUEUES="true",
                    CHURNWATCH_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/hook",
                    CHURNWATCH_WEBHOOK_SECRET=SECRET,
                    CHURNWATCH_FAILPOINT=f"{point}:{marker}")
    feed = Feed()
    feed.logins("+447700900091", 20, 1)
    feed.complaints("+447700900091", 2)
    try:
        worker.start()
        assert worker.cli("replay", str(feed.write(tmp_path / "a.ndjson"))).returncode == 0
        assert worker.proc is not None
        assert worker.proc.wait(timeout=60) == -signal.SIGKILL  # the failpoint fired
        assert marker.read_text() == point
        worker.start()  # same group: the uncommitted batch is delivered again
        worker.wait_caught_up()
        worker.wait_for(lambda: len(set(Receiver.ids)) == 1, timeout=30, what="the webhook")
    finally:
        worker.stop()
        server.shutdown()
    published = [orjson.loads(m) for m in asyncio.run(read_topic(broker.bootstrap,
                                                                  ALERTS_TOPIC))]
    assert len({a["alert_id"] for a in published}) == 1  # one alert, never lost
    alert = published[0]
    assert set(Receiver.ids) == {alert["alert_id"]}  # the receiver acts once per id
    client = redis.Redis.from_url(redis_url)
    queued = [(e[1][b"alert_id"].decode(), e[1][b"action_id"].decode())
              for key in client.scan_iter("cw:queue:*") for e in client.xrange(key)]
    assert sorted(queued) == sorted((alert["alert_id"], a["id"]) for a in alert["actions"])
    recent = [json.loads(a) for a in client.lrange("cw:{+447700900091}:alerts", 0, -1)]
    assert [a["alert_id"] for a in recent] == [alert["alert_id"]]  # marked delivered once
