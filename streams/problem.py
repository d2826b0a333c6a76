"""Error bodies of the HTTP ingest and the web API: RFC 9457 problem details.

Every 4xx/5xx answer of either server is ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail``. A problem with a machine code (``code``) has the type
``tag:churnwatch,2026:problem:<code>`` (a name, not a link) and the code again as the
extension member ``error``; one without has the type ``about:blank``. The title is the
status's HTTP phrase, so it is the same for every occurrence of a type. Servers add their
own extension members (the ingest its ``reason``, the same text as ``detail``).

:func:`problem_middleware` turns what aiohttp raises itself (unknown route 404, method 405,
body over ``client_max_size`` 413) and unexpected exceptions (500, logged with traceback)
into problem bodies too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from aiohttp import web

log = logging.getLogger("churnwatch.http")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:churnwatch,2026:problem:"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """An error response (RFC 9457 problem details). Servers may add extension members;
    clients ignore the ones they do not know."""

    type: Annotated[str, msgspec.Meta(
        description="the problem type: `tag:churnwatch,2026:problem:<code>`, or about:blank",
        extra_json_schema={"format": "uri"})]
    title: Annotated[str, msgspec.Meta(description="the HTTP status phrase")]
    status: Annotated[int, msgspec.Meta(ge=400, le=599, description="the HTTP status code")]
    detail: Annotated[str, msgspec.Meta(description="what went wrong and what to do, for people")]
    error: Annotated[str, msgspec.Meta(
        description="the machine code of the problem type (where it has one), or the "
                    "detail")] | msgspec.UnsetType = msgspec.UNSET


_encoder = msgspec.json.Encoder()


def problem_body(status: int, detail: str, code: str | None = None,
                 **extensions: Any) -> dict[str, Any]:
    """The problem document as a dict (``extensions`` are added as members)."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if code:
        body["error"] = code
    body.update(extensions)
    return body


def problem(status: int, detail: str, code: str | None = None, *,
            headers: Mapping[str, str] | None = None, **extensions: Any) -> web.Response:
    """An ``application/problem+json`` response."""
    return web.Response(status=status, body=_encoder.encode(
        problem_body(status, detail, code, **extensions)), headers=headers,
        content_type=PROBLEM_JSON)


def from_http_exception(exc: web.HTTPException, coded: bool = False) -> web.Response:
    """A problem response for an aiohttp HTTP error (its headers kept, its text as detail);
    ``coded``: with a code from the status phrase and the detail again as ``reason``."""
    headers = {k: v for k, v in exc.headers.items()
               if k.lower() not in ("content-type", "content-length")}
    text = exc.text or ""
    default = f"{exc.status}: {exc.reason}"
    detail = text if text and text != default else _DETAILS.get(exc.status, exc.reason)
    return _problem(exc.status, detail, headers, coded)


def _problem(status: int, detail: str, headers: Mapping[str, str], coded: bool) -> web.Response:
    if not coded:
        return problem(status, detail, headers=headers)
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return problem(status, detail, code, headers=headers, reason=detail)


_DETAILS = {
    404: "no such resource",
    405: "method not allowed on this resource",
    413: "request body too large",
}


def is_problem(response: web.StreamResponse) -> bool:
    return response.content_type == PROBLEM_JSON


def problem_middleware(applies: Callable[[web.Request], bool] = lambda request: True,
                       coded: bool = False,
                       ) -> Callable[[web.Request, _Handler], Awaitable[web.StreamResponse]]:
    """Middleware: for requests where ``applies(request)``, HTTP errors that are not already
    problems, and unexpected exceptions, are answered as problems (``coded``: with a code
    from the status phrase, e.g. ``not_found``, and ``reason``, as the ingest answers)."""

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not applies(request):
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or is_problem(exc):
                raise
            return from_http_exception(exc, coded)
        except Exception:  # noqa: BLE001 - a bug: log it, answer a problem, keep serving
            log.exception("unhandled error on %s %s", request.method,
                          request.match_info.route.resource.canonical
                          if request.match_info.route.resource else "(unmatched)")
            return _problem(500, "internal error; the server logged it", {}, coded)
        if response.status >= 400 and isinstance(response, web.Response) \
                and not is_problem(response):
            return _rewrap(response, coded)
        return response

    return middleware


def _rewrap(response: web.Response, coded: bool) -> web.Response:
    text = (response.text or "") if response.content_type == "text/plain" else ""
    if not text.strip():
        text = _DETAILS.get(response.status, response.reason or "error")
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-type", "content-length")}
    return _problem(response.status, text.strip(), headers, coded)
