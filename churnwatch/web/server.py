"""The worker's web server (aiohttp): health and readiness probes without authentication,
and the retention team's page and API behind :class:`~churnwatch.web.auth.TokenAuth`.

Access logs name the route pattern, never the path: paths carry subscriber ids (phone
numbers). Every response forbids framing and sniffing; the page's policy allows only its own
scripts and styles, and the page inserts data as text, never as HTML.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from churnwatch.web.api import LEGACY_PREFIX, PREFIX, Api, ApiDeps
from churnwatch.web.auth import Sessions, TokenAuth
from churnwatch.web.openapi import openapi_document
from streams.problem import problem_middleware

log = logging.getLogger("churnwatch.web")
_STATIC = resources.files("churnwatch.web").joinpath("static")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class ReadyProbe:
    """Ready when Redis answers a PING and the consumer has partitions assigned."""

    def __init__(self, redis: Any, assigned: Callable[[], bool], timeout_s: float = 2.0) -> None:
        self.redis = redis
        self.assigned = assigned
        self.timeout_s = timeout_s

    async def reason(self) -> str | None:
        """Why the worker is not ready, or None when it is."""
        try:
            await asyncio.wait_for(self.redis.ping(), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"redis unavailable ({type(exc).__name__})"
        if not self.assigned():
            return "no partitions of churn.events assigned to this worker yet"
        return None


class RouteAccessLogger(AbstractAccessLogger):
    """One line per request with the route pattern (no subscriber id), status and time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        match = getattr(request, "match_info", None)
        route = match.route.resource.canonical if match is not None and match.route.resource \
            else "(unmatched)"
        self.logger.info("%s %s %d %.1fms", request.method, route, response.status, time * 1000)


RUNNER_OPTIONS: dict[str, Any] = {"access_log_class": RouteAccessLogger, "access_log": log}


@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request],
                   Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _probes(probe: ReadyProbe) -> list[web.RouteDef]:
    """``/healthz`` (the process answers) and ``/readyz`` (Redis answers, partitions held)."""
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reason = await probe.reason()
        if reason:
            return web.json_response({"status": "not ready", "reason": reason}, status=503)
        return web.json_response({"status": "ready"})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def build_probes_app(probe: ReadyProbe) -> web.Application:
    """The health probes alone: a worker without a web token serves no page and no API."""
    app = web.Application(middlewares=[_headers], client_max_size=1024)
    app.add_routes(_probes(probe))
    return app


def _problems(request: web.Request) -> bool:
    """Errors of the API (unknown paths under it too) and of the login are problem+json; the
    pages' and the probes' are not."""
    path = request.path
    return path == LEGACY_PREFIX or path.startswith(LEGACY_PREFIX + "/") or path == "/login"


def build_app(token: str, deps: ApiDeps, probe: ReadyProbe, *, session_ttl_s: int = 8 * 3600,
              logins_per_minute: int = 10) -> web.Application:
    """The aiohttp application; ``token`` must not be empty. Browser sessions are kept in
    ``deps.redis`` for ``session_ttl_s``; login attempts are limited per client address."""
    auth = TokenAuth(token, Sessions(deps.redis, deps.keys, session_ttl_s), logins_per_minute)
    app = web.Application(middlewares=[_headers, problem_middleware(_problems), auth.middleware],
                          client_max_size=64 * 1024)
    spec = orjson.dumps(openapi_document())

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=_STATIC.joinpath(name).read_text(),
                                content_type="text/html")
        return handler

    app.add_routes([*_probes(probe),
                    web.get("/", page("index.html")), web.get("/login", page("login.html")),
                    web.post("/login", auth.login), web.post("/logout", auth.logout),
                    web.static("/static", str(_STATIC)), web.get(f"{PREFIX}/openapi.json", openapi),
                    *Api(deps).routes()])
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 = any free); returns the runner and the bound port."""
    runner = web.AppRunner(app, handle_signals=False, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
