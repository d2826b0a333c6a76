"""Token authentication of the retention team's page and API.

API clients send ``Authorization: Bearer <token>``. Browsers log in once with the token on
``/login`` and get an HttpOnly, SameSite=Strict session cookie holding an HMAC of the token
(never the token itself). Both are compared in constant time. A cookie-authenticated request
that changes something must be JSON, which a cross-site form cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from aiohttp import web

COOKIE = "churnwatch_session"
PUBLIC = frozenset({"/healthz", "/readyz", "/login", "/logout"})
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenAuth:
    """Checks requests against one token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self._token = token.encode()
        self._session = hmac.new(self._token, b"churnwatch web session v1",
                                 hashlib.sha256).hexdigest().encode()

    def session_value(self) -> str:
        """The cookie value a successful login sets."""
        return self._session.decode()

    def token_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def bearer_ok(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def cookie_ok(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self._session)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """401 (API) or a redirect to /login (pages) unless authenticated; static files and
        the public endpoints pass."""
        path = request.path
        if path in PUBLIC or path.startswith("/static/") or self.bearer_ok(request):
            return await handler(request)
        if self.cookie_ok(request):
            if request.method not in ("GET", "HEAD") and request.content_type != "application/json" \
                    and path.startswith("/api/"):
                return _error(415, "send application/json")
            return await handler(request)
        if path.startswith("/api/"):
            return _error(401, "missing or wrong token: send Authorization: Bearer <token> "
                               "or log in at /login")
        raise web.HTTPFound("/login")

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /login (form field ``token``): set the session cookie and go to the page."""
        body = await request.text()
        token = (parse_qs(body).get("token") or [""])[0]
        if not self.token_ok(token):
            raise web.HTTPFound("/login?failed=1")
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, self.session_value(), httponly=True, samesite="Strict",
                            secure=request.secure, path="/")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /logout: drop the session cookie."""
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
