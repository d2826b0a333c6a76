"""Token authentication of the retention team's page and API.

API clients send ``Authorization: Bearer <token>``, compared in constant time. Browsers log
in once with the token on ``/login`` and get a session: a random id in an HttpOnly,
SameSite=Strict cookie, kept server-side in Redis (by its SHA-256) with an expiry
(``web_session_ttl_s``), so every worker behind a load balancer knows it, ``/logout`` ends it
everywhere, and a stolen cookie stops working when the session ends. Login attempts are
limited per client address (``limits``, a moving window per worker): guessing the token is
not a matter of requests per second. A cookie-authenticated request that changes something
must be JSON, which a cross-site form cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from churnwatch.core.keys import Keys
from streams.problem import problem

COOKIE = "churnwatch_session"
PUBLIC = frozenset({"/healthz", "/readyz", "/login", "/logout", "/api/v1/openapi.json"})
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sessions:
    """Browser sessions in Redis: created at login, ended at logout or after ``ttl_s``."""

    def __init__(self, redis: Any, keys: Keys = Keys(), ttl_s: int = 8 * 3600) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    def _key(self, session_id: str) -> str:
        return self.keys.web_session(hashlib.sha256(session_id.encode()).hexdigest())

    async def create(self) -> str:
        session_id = secrets.token_urlsafe(32)
        await self.redis.set(self._key(session_id), b"1", ex=self.ttl_s)
        return session_id

    async def valid(self, session_id: str) -> bool:
        return bool(session_id) and bool(await self.redis.exists(self._key(session_id)))

    async def end(self, session_id: str) -> None:
        if session_id:
            await self.redis.delete(self._key(session_id))


class TokenAuth:
    """Checks requests against one token; browser sessions live in ``sessions``."""

    def __init__(self, token: str, sessions: Sessions, logins_per_minute: int = 10) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self._token = token.encode()
        self.sessions = sessions
        self._attempts = MovingWindowRateLimiter(MemoryStorage())
        self._limit = RateLimitItemPerMinute(logins_per_minute)

    def token_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def bearer_ok(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    async def cookie_ok(self, request: web.Request) -> bool:
        return await self.sessions.valid(request.cookies.get(COOKIE, ""))

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """401 (API) or a redirect to /login (pages) unless authenticated; static files and
        the public endpoints pass."""
        path = request.path
        if path in PUBLIC or path.startswith("/static/") or self.bearer_ok(request):
            return await handler(request)
        if await self.cookie_ok(request):
            if request.method not in ("GET", "HEAD") and request.content_type != "application/json" \
                    and path.startswith("/api/"):
                return _error(415, "send application/json")
            return await handler(request)
        if path.startswith("/api/"):
            return _error(401, "missing or wrong token: send Authorization: Bearer <token> "
                               "or log in at /login")
        raise web.HTTPFound("/login")

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /login (form field ``token``): start a session and go to the page; 429 with
        ``Retry-After`` once an address has tried too often."""
        address = request.remote or "unknown"
        if not await self._attempts.hit(self._limit, "login", address):
            reset, _ = await self._attempts.get_window_stats(self._limit, "login", address)
            raise web.HTTPTooManyRequests(
                text="too many login attempts from this address; try again later",
                headers={"Retry-After": str(max(1, int(reset - time.time())))})
        body = await request.text()
        token = (parse_qs(body).get("token") or [""])[0]
        if not self.token_ok(token):
            raise web.HTTPFound("/login?failed=1")
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, await self.sessions.create(), httponly=True,
                            samesite="Strict", secure=request.secure, path="/",
                            max_age=self.sessions.ttl_s)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /logout: end the session (everywhere) and drop the cookie."""
        await self.sessions.end(request.cookies.get(COOKIE, ""))
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def _error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="churnwatch"'} if status == 401 else None
    return problem(status, message, headers=headers, error=message)
