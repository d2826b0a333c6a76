"""The OpenAPI 3.1 document of the retention team's API (``GET /api/v1/openapi.json``),
generated from the structs the API decodes and encodes (:mod:`churnwatch.web.api`,
:class:`alerting.alert.Alert`, :class:`streams.problem.Problem`); ``churnwatch schemas``
publishes it in docs/openapi/."""

from __future__ import annotations

from typing import Any

from churnwatch.core.severity import SEVERITIES
from churnwatch.web.api import PREFIX, AlertsPage, Meta, OutcomeAccepted, OutcomeRequest
from streams.contract_schemas import components
from streams.problem import PROBLEM_JSON, Problem

DESCRIPTION = """\
The JSON API behind the retention team's page, served by each worker that has a web token
(`CHURNWATCH_WEB_TOKEN`). API clients send `Authorization: Bearer <token>`; the page uses a
session cookie from `/login` (a cookie-authenticated request that changes something must be
`application/json`).

Every path is under `/api/v1`. The unversioned `/api/...` paths of earlier releases answer
the same but are deprecated (`Deprecation: true`, a `Link` to the successor) and go in a
later release. Errors are `application/problem+json` (RFC 9457).
"""

_REPORT = {
    "type": "object",
    "description": "the subscriber's report as `churnwatch inspect --json` prints it (known, "
                   "features, missing_features, attrs, indicators, segment, score, "
                   "model_version, severity, rules, ruleset_version, alerts) and "
                   "`risk_history`, the risk score over time",
    "properties": {"subscriber_id": {"type": "string"},
                   "risk_history": {
                       "type": "array",
                       "description": "one point per event-time day (UTC) with events, the "
                                      "day's latest score, oldest first",
                       "items": {"type": "object",
                                 "properties": {
                                     "ts": {"type": "integer",
                                            "description": "the day's start, ms since the "
                                                           "epoch (UTC)"},
                                     "score": {"type": "number", "minimum": 0, "maximum": 1,
                                               "description": "to 3 decimals"},
                                     "severity": {"enum": ["low", "medium", "high", None],
                                                  "description": "null: no alert level"}},
                                 "required": ["ts", "score", "severity"]}}},
    "required": ["subscriber_id", "risk_history"],
}
_EFFECT = {"type": "object", "description": "the incrementality ledger's report "
                                            "(docs/retention.md)"}


def _ok(schema: dict[str, Any], description: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": schema}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "invalid parameter or body", 401: "missing or wrong token",
               404: "not found", 413: "body too large",
               415: "a cookie-authenticated change that is not application/json",
               422: "body not valid", 500: "internal error"}
    return {str(s): {"description": meaning[s], "content": {
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for s in (*statuses, 401, 500)}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API under ``/api/v1``."""
    (page, meta, accepted, request, _), schemas = components(
        [AlertsPage, Meta, OutcomeAccepted, OutcomeRequest, Problem],
        "#/components/schemas/{name}")
    secured = [{"bearerAuth": []}, {"sessionCookie": []}]
    query = [
        {"name": "team", "in": "query", "schema": {"type": "string"},
         "description": "only alerts with an action for this team"},
        {"name": "severity", "in": "query", "schema": {"enum": list(SEVERITIES)}},
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}]
    paths = {
        "/alerts": {"get": {"operationId": "listAlerts", "summary": "Delivered alerts, newest "
                            "first", "parameters": query, "security": secured,
                            "responses": {**_ok(page, "the alerts"), **_errors(400)}}},
        "/meta": {"get": {"operationId": "meta", "summary": "The filter choices",
                          "security": secured,
                          "responses": {**_ok(meta, "teams and severities"), **_errors()}}},
        "/subscribers/{subscriber}": {"get": {
            "operationId": "subscriber", "summary": "A subscriber's report and risk history",
            "security": secured,
            "parameters": [{"name": "subscriber", "in": "path", "required": True,
                            "schema": {"type": "string"},
                            "description": "the subscriber id (a phone number is normalised)"}],
            "responses": {**_ok(_REPORT, "the report"), **_errors(400)}}},
        "/effect": {"get": {
            "operationId": "effect", "summary": "The incrementality ledger", "security": secured,
            "parameters": [{"name": "by", "in": "query", "schema": {
                "enum": ["reason", "rule", "band", "segment"], "default": "segment"}}],
            "responses": {**_ok(_EFFECT, "the report"), **_errors(400, 404)}}},
        "/outcomes": {"post": {
            "operationId": "recordOutcome",
            "summary": "Produce an outcome event for one of the subscriber's recent alerts",
            "security": secured,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": request}}},
            "responses": {**_ok(accepted, "the broker has the outcome event", "202"),
                          **_errors(400, 404, 413, 415, 422)}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "churnwatch retention API", "version": "1",
                 "description": DESCRIPTION},
        "servers": [{"url": PREFIX}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "the worker's web token (CHURNWATCH_WEB_TOKEN)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "churnwatch_session",
                                  "description": "a session from POST /login"}},
            "schemas": schemas,
        },
    }
