"""The worker's web API and auth, over aiohttp's test client and a real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from alerting.feed import AlertFeed
from alerting.risk import RiskHistory
from churnwatch.core.errors import ConfigError
from churnwatch.core.keys import Keys
from churnwatch.dev.embedded import free_port
from churnwatch.infra.settings_load import load_settings
from churnwatch.web.api import ApiDeps
from churnwatch.web.auth import COOKIE
from churnwatch.web.server import RUNNER_OPTIONS, ReadyProbe, build_app

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
XSS = "<img/src=x/onerror=alert(1)>"
T0 = 1_767_225_600_000
DAY = 86_400_000
from tests.support.commits import record_risk
from tests.support.contracts import DOCS, assert_problem, assert_valid_component


def _alert(n: int, sid: str, severity: str, team: str, ts: int = T0) -> dict[str, Any]:
    return {"alert_id": f"a{n}", "subscriber_id": sid, "ts": ts + n, "event_id": f"e{n}",
            "severity": severity, "score": 0.5, "rules": ["r"], "segment": "regular",
            "reasons": [{"kind": "indicator", "indicator": "spend_decline",
                         "description": "<b>spend</b> fell"}],
            "actions": [{"id": "call", "team": team, "channel": "call"}]}


class Harness:
    """The web app over real Redis, with the worker's parts replaced by recorders."""

    def __init__(self, redis_url: str, assigned: bool = True) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.sent: list[tuple[str, dict]] = []
        self.assigned = assigned
        self.watermark: int | None = T0 + 10 * 86_400_000
        self.feed = AlertFeed(self.redis, maxlen=1000)
        self.risk = RiskHistory(self.redis, cap=3)

    async def describe(self, sid: str) -> dict[str, Any]:
        alerts = [orjson.loads(a) for a in await self.redis.lrange(Keys().alerts(sid), 0, -1)]
        return {"subscriber_id": sid, "known": True, "indicators": {"spend_decline": True},
                "features": {}, "alerts": alerts}

    async def send_event(self, sid: str, payload: bytes) -> None:
        self.sent.append((sid, orjson.loads(payload)))

    async def event_time(self, sid: str) -> int | None:
        return self.watermark

    def app(self):  # type: ignore[no-untyped-def]
        deps = ApiDeps(redis=self.redis, feed=self.feed, risk=self.risk, describe=self.describe,
                       send_event=self.send_event, event_time=self.event_time,
                       teams=("care", "retention"), clock=lambda: (T0 + 30 * 86_400_000) / 1000)
        self.probe = ReadyProbe(self.redis, lambda: self.assigned)
        return build_app(TOKEN, deps, self.probe)

    async def deliver(self, *alerts: dict[str, Any]) -> None:
        """What the worker does with delivered alerts: the feed and the subscriber's list."""
        await self.feed.add([orjson.dumps(a) for a in alerts])
        for a in alerts:
            await self.redis.lpush(Keys().alerts(a["subscriber_id"]), orjson.dumps(a))


def run(redis_url: str, body: Callable[[TestClient, Harness], Awaitable[None]],
        assigned: bool = True) -> None:
    async def main() -> None:
        h = Harness(redis_url, assigned)
        server = TestServer(h.app())
        await server.start_server(**RUNNER_OPTIONS)
        client = TestClient(server)
        await client.start_server()
        try:
            await body(client, h)
        finally:
            await client.close()
            await h.redis.aclose()
    asyncio.run(main())


def test_health_needs_no_token_and_readiness_explains(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "no partitions" in (await resp.json())["reason"]
        h.assigned = True
        resp = await client.get("/readyz")
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
        h.probe.redis = aioredis.Redis(port=free_port())  # nothing listens there
        resp = await client.get("/readyz")
        assert resp.status == 503 and "redis unavailable" in (await resp.json())["reason"]
        await h.probe.redis.aclose()
    run(redis_url, body, assigned=False)


def test_api_refuses_missing_or_wrong_token(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
            resp = await client.get("/api/v1/alerts", headers=headers)
            assert resp.status == 401, headers
        resp = await client.get("/", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/login"
        resp = await client.post("/api/v1/outcomes", json={})
        assert resp.status == 401
    run(redis_url, body)


def test_feed_is_newest_first_deduplicated_and_filtered(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        await h.deliver(_alert(1, "+441", "high", "retention"), _alert(2, "+442", "low", "care"),
                        _alert(3, "+443", "high", "care"))
        await h.feed.add([orjson.dumps(_alert(2, "+442", "low", "care"))])  # a replayed batch
        async def ids(query: str) -> list[str]:
            resp = await client.get("/api/v1/alerts" + query, headers=AUTH)
            assert resp.status == 200
            return [a["alert_id"] for a in (await resp.json())["alerts"]]
        assert await ids("") == ["a2", "a3", "a1"]
        assert await ids("?severity=high") == ["a3", "a1"]
        assert await ids("?team=care") == ["a2", "a3"]
        assert await ids("?team=care&severity=high") == ["a3"]
        assert await ids("?limit=1") == ["a2"]
        for bad in ("?severity=urgent", "?limit=0", "?limit=x"):
            assert (await client.get("/api/v1/alerts" + bad, headers=AUTH)).status == 400
        meta = await (await client.get("/api/v1/meta", headers=AUTH)).json()
        assert meta == {"teams": ["care", "retention"], "severities": ["high", "medium", "low"]}
    run(redis_url, body)


def test_login_sets_a_strict_httponly_cookie_that_is_not_the_token(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        resp = await client.post("/login", data={"token": "wrong"}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/login?failed=1"
        assert COOKIE not in resp.cookies
        resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/"
        cookie = resp.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert TOKEN not in cookie.value
        page = await client.get("/")
        assert page.status == 200 and "Live alerts" in await page.text()
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert (await client.get("/api/v1/alerts")).status == 200
        # a cookie-authenticated change must be JSON (cross-site forms cannot send that)
        resp = await client.post("/api/v1/outcomes", data="subscriber_id=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 415
        # logout ends the session server-side: the same cookie, replayed, is refused
        await client.post("/logout", allow_redirects=False)
        client.session.cookie_jar.clear()
        assert (await client.get("/api/v1/alerts")).status == 401
        replayed = await client.get("/api/v1/alerts", cookies={COOKIE: cookie.value})
        assert replayed.status == 401
    run(redis_url, body)


def test_sessions_are_random_per_login_and_expire(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        values = []
        for _ in range(2):
            resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
            values.append(resp.cookies[COOKIE].value)
            assert int(resp.cookies[COOKIE]["max-age"]) == 8 * 3600
        assert values[0] != values[1]  # not a function of the token
        client.session.cookie_jar.clear()
        for value in values:
            assert (await client.get("/api/v1/alerts", cookies={COOKIE: value})).status == 200
        # the sessions expire in Redis (here: made to expire now)
        for key in await h.redis.keys(Keys().web_session("*")):
            await h.redis.pexpire(key, 1)
        await asyncio.sleep(0.05)
        for value in values:
            assert (await client.get("/api/v1/alerts", cookies={COOKIE: value})).status == 401
        assert (await client.get("/api/v1/alerts", cookies={COOKIE: "forged"})).status == 401
    run(redis_url, body)


def test_login_attempts_are_limited_per_address(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        statuses = [(await client.post("/login", data={"token": f"guess-{n}"},
                                       allow_redirects=False)).status for n in range(10)]
        assert statuses == [302] * 10  # wrong tokens: back to the form
        refused = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert COOKIE not in refused.cookies  # even the right token waits out the window
    run(redis_url, body)


def test_marking_an_outcome_produces_a_fresh_outcome_event(redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        await h.deliver(_alert(1, "+4479111", "high", "retention"))
        request = {"subscriber_id": "+44 79111", "alert_id": "a1", "result": "accepted"}
        first = await client.post("/api/v1/outcomes", json=request, headers=AUTH)
        second = await client.post("/api/v1/outcomes", json=request, headers=AUTH)
        assert first.status == second.status == 202
        assert [sid for sid, _ in h.sent] == ["+4479111", "+4479111"]
        event = h.sent[0][1]
        assert {k: event[k] for k in ("subscriber_id", "type", "alert_id", "result")} == {
            "subscriber_id": "+4479111", "type": "outcome", "alert_id": "a1",
            "result": "accepted"}
        assert event["ts"] == h.watermark  # the stream's event time, not the wall clock
        assert h.sent[0][1]["event_id"] != h.sent[1][1]["event_id"]
        assert (await first.json())["event_id"] == event["event_id"]
        h.watermark = None
        resp = await client.post("/api/v1/outcomes", json=request, headers=AUTH)
        assert (await resp.json())["ts"] == T0 + 30 * 86_400_000  # no watermark: now
        cases = [({**request, "alert_id": "other"}, 404), ({**request, "result": "maybe"}, 422),
                 ({**request, "subscriber_id": "a b"}, 400), ({"alert_id": "a1"}, 422)]
        for payload, status in cases:
            resp = await client.post("/api/v1/outcomes", json=payload, headers=AUTH)
            assert resp.status == status, payload
            assert "error" in await resp.json()
        resp = await client.post("/api/v1/outcomes", data=b"{not json", headers=AUTH)
        assert resp.status == 400
        assert len(h.sent) == 3
    run(redis_url, body)


def test_subscriber_view_returns_data_as_json_never_html(redis_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        await h.deliver(_alert(1, XSS, "high", "care"))
        await record_risk(h.risk, {XSS: [(T0 + 1000, 0.4, "high"), (T0 + DAY + 2000, 0.3, "")]})
        with caplog.at_level(logging.INFO, logger="churnwatch.web"):
            resp = await client.get(f"/api/v1/subscribers/{quote(XSS, safe='')}", headers=AUTH)
            await resp.read()
            await asyncio.sleep(0.05)  # the access log line follows the response
        assert resp.status == 200 and resp.content_type == "application/json"
        report = await resp.json()
        assert report["subscriber_id"] == XSS
        assert report["alerts"][0]["reasons"][0]["description"] == "<b>spend</b> fell"
        assert report["risk_history"] == [
            {"ts": T0 // DAY * DAY, "score": 0.4, "severity": "high"},  # the day
            {"ts": (T0 + DAY) // DAY * DAY, "score": 0.3, "severity": None}]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "/api/v1/subscribers/{subscriber}" in logged and "onerror" not in logged
        resp = await client.get("/api/v1/subscribers/%20", headers=AUTH)
        assert resp.status == 400
    run(redis_url, body)


def test_the_web_server_refuses_a_short_token() -> None:
    with pytest.raises(ConfigError, match="web-token.*at least 16"):
        load_settings(web_token="short")


@pytest.mark.integration
def test_the_contracts_stable_keys_alone_start_a_worker_with_probes_only(
        broker, redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The contract's stable keys do not include CHURNWATCH_WEB_TOKEN: a worker without it
    starts, serves its health probes, and no page or API (no token to guard them)."""
    import urllib.error
    import urllib.request

    from tests.support.worker import Worker

    worker = Worker(broker, redis_url, tmp_path)
    del worker.env["CHURNWATCH_WEB_TOKEN"]
    try:
        worker.start()
        worker.wait_for(lambda: worker.metric("churnwatch_ruleset_info") is not None, 90,
                        "the worker to start")
        base = f"http://127.0.0.1:{worker.web_port}"
        worker.wait_for(lambda: _answers(f"{base}/healthz"), 30, "/healthz")
        for path in ("/", "/api/v1/meta"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=5)
            assert err.value.code == 404
        assert "CHURNWATCH_WEB_TOKEN is empty" in worker.log_path.read_text()
    finally:
        worker.stop()


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=5).status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_errors_are_problems_and_old_paths_are_deprecated_aliases(redis_url: str) -> None:
    async def problem(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
        assert resp.status == status
        body = await resp.json()
        assert_problem(status, resp.content_type, body)
        return body

    async def body(client: TestClient, h: Harness) -> None:
        await h.deliver(_alert(1, "+441", "high", "retention"))
        new = await client.get("/api/v1/alerts", headers=AUTH)
        old = await client.get("/api/alerts", headers=AUTH)
        assert new.status == old.status == 200 and await new.json() == await old.json()
        assert "Deprecation" not in new.headers and old.headers["Deprecation"] == "true"
        assert old.headers["Link"] == '</api/v1/alerts>; rel="successor-version"'
        unauthorized = await problem(await client.get("/api/v1/meta"), 401)
        assert "Bearer" in unauthorized["detail"]
        await problem(await client.get("/api/v1/alerts?limit=0", headers=AUTH), 400)
        gone = await client.get("/api/alerts?limit=0", headers=AUTH)
        assert (await problem(gone, 400))["error"] and gone.headers["Deprecation"] == "true"
        await problem(await client.get("/api/v1/nothing-here", headers=AUTH), 404)
        await problem(await client.get("/api/nothing-here", headers=AUTH), 404)
        await problem(await client.delete("/api/v1/alerts", headers=AUTH), 405)
        outcome = {"subscriber_id": "+4479111", "alert_id": "zz", "result": "accepted"}
        await problem(await client.post("/api/v1/outcomes", json=outcome, headers=AUTH), 404)
        await problem(await client.post("/api/v1/outcomes", json={"x": 1}, headers=AUTH), 422)
        await problem(await client.post("/api/v1/outcomes", data=b"x" * 70_000,
                                        headers={**AUTH, "Content-Type": "application/json"}),
                      413)
        ok = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert ok.status == 302
        await problem(await client.post("/api/v1/outcomes", data="a=b"), 415)  # the cookie
        for n in range(10):
            await client.post("/login", data={"token": f"guess-{n}"}, allow_redirects=False)
        limited = await problem(await client.post("/login", data={"token": "x"}), 429)
        assert "too many login attempts" in limited["detail"]
        readyz = await client.get("/readyz")  # the probes keep their own bodies
        assert readyz.content_type == "application/json"

    run(redis_url, body)


def test_the_openapi_document_is_served_without_a_token_and_is_the_published_one(
        redis_url: str) -> None:
    async def body(client: TestClient, h: Harness) -> None:
        resp = await client.get("/api/v1/openapi.json")
        assert resp.status == 200 and resp.content_type == "application/json"
        published = orjson.loads((DOCS / "openapi" / "web.json").read_bytes())
        assert await resp.json() == published
        meta = await (await client.get("/api/v1/meta", headers=AUTH)).json()
        assert_valid_component(published, "Meta", meta)

    run(redis_url, body)

