"""The JSON API of the retention team's page: the alerts feed, a subscriber's view, and
marking an action's outcome (which becomes an ``outcome`` event on churn.events)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from aiohttp import web

from alerting.feed import AlertFeed
from alerting.risk import RiskHistory
from churnwatch.core.errors import EventError
from churnwatch.core.events import OutcomeResult, decode_payload, normalise_subscriber
from churnwatch.core.keys import Keys
from churnwatch.core.severity import SEVERITIES


@dataclass(frozen=True)
class ApiDeps:
    """What the API reads and writes, passed in by the worker (or a test).

    ``describe(subscriber_id)`` returns the subscriber's report (``churnwatch.inspect``);
    ``send_event(subscriber_id, event_json)`` produces an event onto churn.events and returns
    once the broker acknowledged it; ``event_time(subscriber_id)`` is the stream's current
    event time for that subscriber's partition (None if unknown)."""

    redis: Any
    feed: AlertFeed
    risk: RiskHistory
    describe: Callable[[str], Awaitable[dict[str, Any]]]
    send_event: Callable[[str, bytes], Awaitable[None]]
    event_time: Callable[[str], Awaitable[int | None]]
    teams: tuple[str, ...] = ()
    keys: Keys = Keys()
    # the incrementality ledger's report (alerting.effect.report) by "reason" or "segment"
    effect: Callable[[str], Awaitable[dict[str, Any]]] | None = None
    clock: Callable[[], float] = time.time


class OutcomeRequest(msgspec.Struct, forbid_unknown_fields=True):
    subscriber_id: str
    alert_id: str
    result: OutcomeResult


def _json_error(status: int, message: str) -> web.HTTPException:
    kinds = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 422: web.HTTPUnprocessableEntity}
    return kinds[status](text=orjson.dumps({"error": message}).decode(),
                         content_type="application/json")


def _subscriber(raw: str) -> str:
    try:
        return normalise_subscriber(raw)
    except EventError as exc:
        raise _json_error(400, f"subscriber id: {exc.reason}") from None


class Api:
    """Request handlers over :class:`ApiDeps`."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/alerts", self.alerts),
                web.get("/api/meta", self.meta),
                web.get("/api/subscribers/{subscriber}", self.subscriber),
                web.get("/api/effect", self.effect),
                web.post("/api/outcomes", self.outcome)]

    async def meta(self, request: web.Request) -> web.Response:
        """GET /api/meta: the filter choices (teams of the playbook, severities)."""
        return web.json_response({"teams": list(self.deps.teams), "severities": SEVERITIES[::-1]})  # highest first

    async def alerts(self, request: web.Request) -> web.Response:
        """GET /api/alerts?team=&severity=&limit=: delivered alerts, newest first."""
        q = request.query
        severity = q.get("severity") or None
        if severity is not None and severity not in SEVERITIES:
            raise _json_error(400, f"severity must be one of {', '.join(SEVERITIES)}")
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise _json_error(400, "limit must be an integer") from None
        if not 1 <= limit <= 500:
            raise _json_error(400, "limit must be between 1 and 500")
        alerts = await self.deps.feed.latest(limit, team=q.get("team") or None,
                                             severity=severity)
        return web.json_response({"alerts": alerts}, dumps=_dumps)

    async def effect(self, request: web.Request) -> web.Response:
        """GET /api/effect?by=reason|rule|band|segment: the incrementality ledger."""
        by = request.query.get("by", "segment")
        if by not in ("reason", "rule", "band", "segment"):
            raise _json_error(400, "by must be reason, rule, band or segment")
        if self.deps.effect is None:
            raise _json_error(404, "this server keeps no incrementality ledger")
        return web.json_response(await self.deps.effect(by), dumps=_dumps)

    async def subscriber(self, request: web.Request) -> web.Response:
        """GET /api/subscribers/{id}: report (features, indicators, score, alerts) and the
        risk score over time."""
        sid = _subscriber(request.match_info["subscriber"])
        report = await self.deps.describe(sid)
        report["risk_history"] = await self.deps.risk.read(sid)
        return web.json_response(report, dumps=_dumps)

    async def outcome(self, request: web.Request) -> web.Response:
        """POST /api/outcomes {subscriber_id, alert_id, result}: produce an outcome event for
        one of the subscriber's recent alerts; 202 with its event_id once the broker has it."""
        try:
            body = msgspec.json.decode(await request.read(), type=OutcomeRequest)
        except msgspec.ValidationError as exc:
            raise _json_error(422, str(exc)) from None
        except msgspec.DecodeError:
            raise _json_error(400, "body must be JSON") from None
        sid = _subscriber(body.subscriber_id)
        recent = await self.deps.redis.lrange(self.deps.keys.alerts(sid), 0, -1)
        alert = next((a for a in map(orjson.loads, recent) if a["alert_id"] == body.alert_id),
                     None)
        if alert is None:
            raise _json_error(404, "no such alert among the subscriber's recent alerts")
        now_ms = int(self.deps.clock() * 1000)
        stream_now = await self.deps.event_time(sid)
        ts = max(alert["ts"], min(now_ms, stream_now) if stream_now else now_ms)
        event = {"event_id": f"web-outcome-{uuid.uuid4().hex}", "subscriber_id": sid,
                 "type": "outcome", "ts": ts, "alert_id": body.alert_id, "result": body.result}
        payload = orjson.dumps(event)
        valid, rejected = decode_payload(payload)
        if rejected or not valid:
            raise _json_error(422, rejected[0].reason if rejected else "invalid outcome")
        await self.deps.send_event(sid, payload)
        return web.json_response({"event_id": event["event_id"], "ts": ts}, status=202)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
