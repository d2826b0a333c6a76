"""The signed webhook sink against a real HTTP receiver on 127.0.0.1: signatures, retries with
backoff and Retry-After, dead letters, bounded concurrency and ambiguous outcomes."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from alerting.alert import Action, Alert, to_json
from alerting.webhook import (
    WebhookReport,
    WebhookSink,
    secret_key,
    sign,
    verify_signature,
)
from churnwatch.dev.embedded import free_port

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
T = 1_780_000_000.0


def alert(n: int) -> Alert:
    return Alert(alert_id=f"alert-{n}", subscriber_id=f"s{n}", ts=1, event_id=f"e{n}",
                 severity="high", score=0.9, rules=["r"], reasons=[], segment="consumer",
                 actions=[Action("call", "care", 24)], detected_at=2, model_version="m1",
                 ruleset_version="v1")


class Ceiling:
    """Jitter source returning the upper bound, so backoff delays are exact."""

    def uniform(self, low: float, high: float) -> float:
        return high


class Clock:
    """Fake wall clock that advances by each fake sleep."""

    def __init__(self, now: float = T) -> None:
        self.now = now
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # processed, then answered late
    drop: bool = False  # processed, then the connection is closed without a response


@dataclass
class Receiver:
    """Replies by script (then 200), records every request and performs each action once per
    webhook-id, as an idempotent receiver should."""

    script: list[Reply] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    performed: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold_s: float = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((headers, body))
        reply = self.script.pop(0) if self.script else Reply()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.in_flight -= 1
        if 200 <= reply.status < 300 and headers["webhook-id"] not in self.performed:
            self.performed.append(headers["webhook-id"])
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
        await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, headers=reply.headers)

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _ in self.requests]


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        await server.close()


class DeadLetters(list):
    async def __call__(self, alert: Alert, reason: str) -> None:
        self.append((alert.alert_id, reason))


def deliver(receiver: Receiver, alerts: list[Alert], url: str | None = None,
            **options: Any) -> tuple[WebhookReport, DeadLetters, Clock]:
    """Send ``alerts`` through a fresh sink with a fake clock/sleep and exact jitter."""
    clock, dead = Clock(), DeadLetters()

    async def go() -> WebhookReport:
        async with serving(receiver) as served:
            sink = WebhookSink(url or served, SECRET, sleep=clock.sleep, clock=clock,
                               on_dead_letter=dead, rng=Ceiling(), **options)
            try:
                return await sink.send(alerts, [to_json(a) for a in alerts])
            finally:
                await sink.aclose()

    return asyncio.run(go()), dead, clock


# ------------------------------------------------------------------ signatures
def test_standard_webhooks_reference_vector() -> None:
    """The specification's published example, so any Standard Webhooks library verifies us."""
    secret, body = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", b'{"test": 2432232314}'
    signature = sign(secret_key(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "Webhook-Timestamp": "1614265330",
               "Webhook-Signature": f"v1,bm90IGl0 {signature}"}  # rotated keys: any one matches
    assert verify_signature(secret, headers, body, now=1614265330 + 10)


def signed(secret: str, body: bytes, ts: int = int(T)) -> dict[str, str]:
    return {"webhook-id": "m1", "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret_key(secret), "m1", ts, body)}


@pytest.mark.parametrize(("secret", "body", "now", "ok"), [
    (SECRET, b'{"a":1}', T, True),
    (SECRET, b'{"a":2}', T, False),  # tampered body
    ("whsec_" + base64.b64encode(b"another secret, 32 bytes long..").decode(), b'{"a":1}', T,
     False),
    (SECRET, b'{"a":1}', T + 300, True),  # at the tolerance
    (SECRET, b'{"a":1}', T + 301, False),  # stale
    (SECRET, b'{"a":1}', T - 301, False),  # from the future
])
def test_verify_signature(secret: str, body: bytes, now: float, ok: bool) -> None:
    assert verify_signature(secret, signed(SECRET, b'{"a":1}'), body, now=now) is ok


@pytest.mark.parametrize(("secret", "why"), [
    ("plain-text-secret", "generate one with"),
    (SECRET.removeprefix("whsec_"), "generate one with"),  # base64 without the prefix
    ("whsec_not*base64", "invalid base64"),
    ("whsec_" + base64.b64encode(b"16 bytes is few.").decode(), "16 bytes"),
])
def test_secrets_other_than_whsec_base64_are_refused(secret: str, why: str) -> None:
    for make in (lambda: secret_key(secret), lambda: WebhookSink("http://h/hook", secret),
                 lambda: verify_signature(secret, signed(SECRET, b"{}"), b"{}", now=T)):
        with pytest.raises(ValueError, match=why) as info:
            make()
        assert "secrets.token_bytes(32)" in str(info.value)


def test_malformed_headers_are_refused() -> None:
    body = b"{}"
    good = signed(SECRET, body)
    assert verify_signature(SECRET, good, body, now=T)
    for broken in ({**good, "webhook-timestamp": "soon"}, {**good, "webhook-signature": ""},
                   {**good, "webhook-id": "m2"},
                   {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
                   {k: v for k, v in good.items() if k != "webhook-id"}):
        assert not verify_signature(SECRET, broken, body, now=T)
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://example.org/hook", SECRET)


def test_a_plain_text_secret_stops_the_worker_at_startup(tmp_path: Path) -> None:
    """One line naming the setting and how to generate a valid secret; the secret itself is
    not echoed."""
    env = dict(os.environ, CHURNWATCH_BROKER="kafka://127.0.0.1:1",
               CHURNWATCH_REDIS_URL="redis://127.0.0.1:1/0",
               CHURNWATCH_WEBHOOK_URL="http://127.0.0.1:1/hook",
               CHURNWATCH_WEBHOOK_SECRET="my-plain-text-secret")
    out = subprocess.run([sys.executable, "-m", "churnwatch", "worker"], env=env,
                         capture_output=True, timeout=60)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0
    assert "CHURNWATCH_WEBHOOK_SECRET" in text and "secrets.token_bytes(32)" in text, text
    assert "my-plain-text-secret" not in text and "Traceback" not in text


def test_delivery_is_signed_and_verifiable() -> None:
    receiver = Receiver()
    report, dead, _ = deliver(receiver, [alert(1)])
    assert report == WebhookReport(delivered=1, dead_lettered=0, retries=0)
    assert dead == []
    ((headers, body),) = receiver.requests
    assert orjson.loads(body) == {"type": "churn.alert", "timestamp": "1970-01-01T00:00:00.002Z",
                                  "data": orjson.loads(to_json(alert(1)))}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "alert-1"
    assert headers["webhook-timestamp"] == str(int(T))
    assert verify_signature(SECRET, headers, body, now=T)
    assert not verify_signature(SECRET, headers, body + b" ", now=T)
    assert receiver.performed == ["alert-1"]


def test_the_official_library_verifies_every_attempt() -> None:
    """``standardwebhooks`` (the spec's reference library) verifies what the sink sends, on
    the first attempt and on retries (same body, own timestamp), and rejects a tampered body
    or another secret."""
    receiver = Receiver([Reply(503)])
    dead = DeadLetters()
    sent = Alert(**{**msgspec.structs.asdict(alert(7)), "detected_at": 1_780_000_000_123})

    async def go() -> WebhookReport:
        async with serving(receiver) as url:
            sink = WebhookSink(url, SECRET, on_dead_letter=dead, base_delay_s=0.01)
            try:
                return await sink.send([sent], [to_json(sent)])
            finally:
                await sink.aclose()

    assert asyncio.run(go()) == WebhookReport(delivered=1, dead_lettered=0, retries=1)
    assert len(receiver.requests) == 2 and receiver.requests[0][1] == receiver.requests[1][1]
    for headers, body in receiver.requests:
        message = Webhook(SECRET).verify(body, headers)
        assert message == {"type": "churn.alert", "timestamp": "2026-05-28T20:26:40.123Z",
                           "data": orjson.loads(to_json(sent))}
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body.replace(b"high", b"low"), headers)
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        with pytest.raises(WebhookVerificationError):
            Webhook(other).verify(body, headers)


# ------------------------------------------------------------------ retries
def test_retries_5xx_with_capped_exponential_backoff_and_resigns() -> None:
    receiver = Receiver([Reply(500), Reply(503), Reply(502), Reply(500)])
    report, dead, clock = deliver(receiver, [alert(1)], max_delay_s=1.0)
    assert report == WebhookReport(delivered=1, dead_lettered=0, retries=4)
    assert clock.delays == [0.2, 0.4, 0.8, 1.0]  # full jitter's upper bound, capped
    assert receiver.ids() == ["alert-1"] * 5
    stamps = [int(h["webhook-timestamp"]) for h, _ in receiver.requests]
    assert stamps == [int(T), int(T + 0.2), int(T + 0.6), int(T + 1.4), int(T + 2.4)]
    for headers, body in receiver.requests:  # each attempt is signed at its own time
        assert verify_signature(SECRET, headers, body, now=int(headers["webhook-timestamp"]))
    assert receiver.performed == ["alert-1"]


def test_jitter_stays_within_the_backoff_cap() -> None:
    sink = WebhookSink("http://127.0.0.1:1/hook", SECRET, base_delay_s=0.2, max_delay_s=1.0)
    for attempt, cap in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        delays = [sink._backoff(attempt, None) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jittered over the range, not a constant
    asyncio.run(sink.aclose())


def test_429_and_503_honour_retry_after() -> None:
    http_date = email.utils.formatdate(T + 7, usegmt=True)
    receiver = Receiver([Reply(429, {"Retry-After": "3"}), Reply(503, {"Retry-After": http_date}),
                         Reply(429, {"Retry-After": "120"}), Reply(503, {"Retry-After": "soon"})])
    report, dead, clock = deliver(receiver, [alert(1)])
    # seconds, HTTP date (7 s after the fake clock, 3 s of which already slept), capped at
    # max_delay_s, unreadable → backoff of the 4th retry
    assert clock.delays == [3.0, 4.0, 10.0, 1.6]
    assert receiver.ids() == ["alert-1"] * 5
    assert report == WebhookReport(delivered=1, dead_lettered=0, retries=4)
    assert dead == []


def test_other_4xx_are_not_retried() -> None:
    receiver = Receiver([Reply(400), Reply(404)])
    report, dead, clock = deliver(receiver, [alert(1), alert(2)], concurrency=1)
    assert report == WebhookReport(delivered=0, dead_lettered=2, retries=0)
    assert dead == [("alert-1", "HTTP 400 (not retried)"), ("alert-2", "HTTP 404 (not retried)")]
    assert clock.delays == []
    assert receiver.ids() == ["alert-1", "alert-2"]
    assert receiver.performed == []


def test_dead_letter_after_the_retry_budget() -> None:
    receiver = Receiver([Reply(500)] * 3 + [Reply(200)])
    report, dead, clock = deliver(receiver, [alert(1)], max_attempts=3)
    assert report == WebhookReport(delivered=0, dead_lettered=1, retries=2)
    assert dead == [("alert-1", "HTTP 500 after 3 attempts")]
    assert clock.delays == [0.2, 0.4]
    assert receiver.ids() == ["alert-1"] * 3


def test_connection_refused_is_retried_then_dead_lettered() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    report, dead, clock = deliver(Receiver(), [alert(1)], url=url, max_attempts=2)
    assert report == WebhookReport(delivered=0, dead_lettered=1, retries=1)
    assert dead == [("alert-1", "ConnectError after 2 attempts")]
    assert clock.delays == [0.2]


def test_dead_letter_failure_propagates() -> None:
    async def broken(alert: Alert, reason: str) -> None:
        raise RuntimeError("dlq down")

    async def go() -> None:
        async with serving(Receiver([Reply(400)])) as url:
            sink = WebhookSink(url, SECRET, on_dead_letter=broken)
            try:
                await sink.send([alert(1)], [to_json(alert(1))])
            finally:
                await sink.aclose()

    with pytest.raises(RuntimeError, match="dlq down"):
        asyncio.run(go())


# ------------------------------------------------------------------ ambiguous outcomes
@pytest.mark.parametrize("lost", [Reply(200, delay_s=1.0), Reply(200, drop=True)],
                         ids=["response-after-timeout", "connection-closed"])
def test_lost_response_is_retried_and_performed_once(lost: Reply) -> None:
    """The receiver performs the action but the sender never sees the answer: it retries with
    the same webhook-id, and the receiver deduplicates on it."""
    receiver = Receiver([lost])
    report, dead, clock = deliver(receiver, [alert(1)], timeout_s=0.3)
    assert receiver.ids() == ["alert-1", "alert-1"]
    assert receiver.performed == ["alert-1"]
    assert report == WebhookReport(delivered=1, dead_lettered=0, retries=1)
    assert clock.delays == [0.2]
    assert dead == []


# ------------------------------------------------------------------ concurrency
def test_sends_concurrently_within_the_bound() -> None:
    receiver = Receiver(hold_s=0.15)
    alerts = [alert(n) for n in range(20)]
    report, dead, _ = deliver(receiver, alerts, concurrency=8)
    assert report == WebhookReport(delivered=20, dead_lettered=0, retries=0)
    assert receiver.max_in_flight == 8
    assert sorted(receiver.performed) == sorted(a.alert_id for a in alerts)
    assert dead == []
