"""The JSON API of the retention team's page: the alerts feed, a subscriber's view, and
marking an action's outcome (which becomes an ``outcome`` event on churn.events).

It is served under ``/api/v1``; the unversioned ``/api/...`` paths of earlier releases still
answer the same, with ``Deprecation: true`` and a ``Link`` to the successor (they go in a
later release). Errors are problem+json (:mod:`streams.problem`), with the detail again as
``error`` as earlier releases sent it. The OpenAPI document is :mod:`churnwatch.web.openapi`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson
from aiohttp import web

from alerting.alert import Alert
from alerting.feed import AlertFeed
from alerting.risk import RiskHistory
from churnwatch.core.errors import EventError
from churnwatch.core.events import OutcomeResult, decode_payload, normalise_subscriber
from churnwatch.core.keys import Keys
from churnwatch.core.severity import SEVERITIES
from streams.problem import PROBLEM_JSON, problem_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encoder = msgspec.json.Encoder()


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


PREFIX = "/api/v1"
LEGACY_PREFIX = "/api"  # deprecated aliases of PREFIX


class OutcomeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The outcome of a retention action on one of the subscriber's recent alerts."""

    subscriber_id: str
    alert_id: str
    result: OutcomeResult


class OutcomeAccepted(msgspec.Struct, frozen=True):
    """The outcome event produced (the broker acknowledged it)."""

    event_id: str
    ts: Annotated[int, msgspec.Meta(description="its event time, epoch ms")]


class Meta(msgspec.Struct, frozen=True):
    """The filter choices of the page."""

    teams: Annotated[list[str], msgspec.Meta(description="the teams of the playbook")]
    severities: Annotated[list[str], msgspec.Meta(description="highest first")]


class AlertsPage(msgspec.Struct, frozen=True):
    """Delivered alerts, newest first."""

    alerts: list[Alert]


def _json_error(status: int, message: str) -> web.HTTPException:
    kinds = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 422: web.HTTPUnprocessableEntity}
    return kinds[status](body=_encoder.encode(problem_body(status, message, error=message)),
                         content_type=PROBLEM_JSON)


def deprecated(handler: Handler, successor: str) -> Handler:
    """``handler`` under a deprecated path: every answer (errors too) says so."""
    headers = {"Deprecation": "true", "Link": f'<{successor}>; rel="successor-version"'}

    async def alias(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return alias


def _subscriber(raw: str) -> str:
    try:
        return normalise_subscriber(raw)
    except EventError as exc:
        raise _json_error(400, f"subscriber id: {exc.reason}") from None


class Api:
    """Request handlers over :class:`ApiDeps`."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    def table(self) -> list[tuple[str, str, Handler]]:
        """(method, path under the prefix, handler) of every operation."""
        return [("GET", "/alerts", self.alerts), ("GET", "/meta", self.meta),
                ("GET", "/subscribers/{subscriber}", self.subscriber),
                ("GET", "/effect", self.effect), ("POST", "/outcomes", self.outcome)]

    def routes(self) -> list[web.RouteDef]:
        """The operations under ``/api/v1`` and, deprecated, under ``/api``."""
        out = []
        for method, path, handler in self.table():
            out.append(web.route(method, PREFIX + path, handler))
            out.append(web.route(method, LEGACY_PREFIX + path,
                                 deprecated(handler, PREFIX + path)))
        return out

    async def meta(self, request: web.Request) -> web.Response:
        """GET /api/v1/meta: the filter choices (teams of the playbook, severities)."""
        return _struct(Meta(list(self.deps.teams), list(SEVERITIES[::-1])))

    async def alerts(self, request: web.Request) -> web.Response:
        """GET /api/v1/alerts?team=&severity=&limit=: delivered alerts, newest first."""
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
        """GET /api/v1/effect?by=reason|rule|band|segment: the incrementality ledger."""
        by = request.query.get("by", "segment")
        if by not in ("reason", "rule", "band", "segment"):
            raise _json_error(400, "by must be reason, rule, band or segment")
        if self.deps.effect is None:
            raise _json_error(404, "this server keeps no incrementality ledger")
        return web.json_response(await self.deps.effect(by), dumps=_dumps)

    async def subscriber(self, request: web.Request) -> web.Response:
        """GET /api/v1/subscribers/{id}: report (features, indicators, score, alerts) and the
        risk score over time."""
        sid = _subscriber(request.match_info["subscriber"])
        report = await self.deps.describe(sid)
        report["risk_history"] = await self.deps.risk.read(sid)
        return web.json_response(report, dumps=_dumps)

    async def outcome(self, request: web.Request) -> web.Response:
        """POST /api/v1/outcomes {subscriber_id, alert_id, result}: produce an outcome event for
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
        return _struct(OutcomeAccepted(event["event_id"], ts), status=202)


def _struct(value: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status,
                        content_type="application/json")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
