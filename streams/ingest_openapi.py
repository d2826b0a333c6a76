"""The OpenAPI 3.1 document of the HTTP ingest front door (``GET /openapi.json``),
generated from the structs the ingest decodes and encodes: the event union of
:mod:`churnwatch.core.events`, :class:`IngestResult` (the 200 answer, encoded from these
structs by :mod:`streams.ingest`) and :class:`streams.problem.Problem` (every error).
Tests run schemathesis against it; ``churnwatch schemas`` publishes it in docs/openapi/.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec

from churnwatch.core.events import AnyEvent
from streams.contract_schemas import components
from streams.problem import PROBLEM_JSON, Problem

RejectionKind = Literal["malformed", "too_large", "not_an_object", "missing_field",
                        "unknown_type", "subscriber_id", "ts", "invalid_value", "forbidden"]
# what reason_kind answers (``forbidden`` comes from the feed's grant instead)
REASON_KINDS = tuple(k for k in get_args(RejectionKind) if k != "forbidden")


class Rejection(msgspec.Struct, frozen=True):
    """An event of the body that was not accepted (it went to the dead-letter topic)."""

    index: Annotated[int, msgspec.Meta(ge=0, description="0-based position in the body")]
    reason: str
    kind: RejectionKind
    status: Annotated[Literal[403, 422], msgspec.Meta(
        description="403: outside the feed's grant; 422: not a valid event")]


class IngestResult(msgspec.Struct, frozen=True):
    """What became of a body's events: valid ones acknowledged by the broker, the others
    listed (and dead-lettered)."""

    accepted: Annotated[int, msgspec.Meta(ge=0, description="events acknowledged by the broker")]
    rejected: list[Rejection]
    feed: Annotated[str, msgspec.Meta(description="the feed of the bearer token")]


class Health(msgspec.Struct, frozen=True):
    """The process answers."""

    status: Literal["ok"]


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}

DESCRIPTION = """\
HTTP front door of churnwatch for telemetry feeds that cannot speak Kafka. It runs as its own
process (`churnwatch ingest`), separate from the stream workers, so ingest scales
independently and a slow pipeline never blocks HTTP.

**Body**: one JSON event, a JSON array of events (`application/json`), or NDJSON
(`application/x-ndjson`, one event per line). Every event is validated against the event
contract; valid events are produced to Kafka `churn.events` (packed many per Kafka message,
per partition of their subscriber) and the response is sent only after the broker has
acknowledged them (acks=all): an accepted event is durable. Invalid events are listed in the
response with their index (0-based position in the body) and reason, and are written to the
dead-letter topic `churn.dlq` with topic `http:<feed>`. Every produced event carries an extra
field `feed` naming the feed of the bearer token (audit), and its `event_id` becomes
`<feed>:<event_id>` (ids are unique per feed; over 128 characters, `<feed>:#<hash>`).

**Grants**: a feed may send behaviour events (spend, login, complaint, usage, plan_change,
profile) unless its tokens-file entry grants other types; `churn`, `active` and `outcome`
need an explicit grant, and a feed may be limited to subscriber id prefixes. An event
outside the grant is refused alone: listed with kind `forbidden` and status 403, and
dead-lettered with kind `forbidden`.

**Compression**: `Content-Encoding: gzip` or `deflate` is accepted (after the token check);
the inflated body is held to the same size limit (413).

**Idempotent retries**: on a timeout, 429, 503 or a lost connection, resend the same batch.
Events already accepted are recognised by their `event_id` downstream and change nothing
(no duplicate features, alerts or actions). The response does not say how many events were
already seen: the event_id dedup state lives in the workers' Redis feature store, per
subscriber and event-time window, and is only decided when a worker applies the event;
asking it here would put a Redis round trip on the HTTP path and still race with events
still queued in Kafka, so the count would be neither cheap nor exact.

**Limits**: body size and events per request (413), the body's time and minimum rate (408),
a per-feed rate limit in events per second shared by every ingest replica (429 with
Retry-After), and a bounded number of requests in flight, globally and per feed (503 with
Retry-After when full or when the broker does not acknowledge in time; nothing is silently
dropped: retry the whole batch).
"""


def openapi_document(max_body_bytes: int, max_events: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with the configured limits in the descriptions."""
    (event, result, problem_schema, health), schemas = components(
        [AnyEvent, IngestResult, Problem, Health], "#/components/schemas/{name}")
    body_schema = {"oneOf": [{"$ref": "#/components/schemas/Event"},
                             {"type": "array", "items": {"$ref": "#/components/schemas/Event"},
                              "minItems": 1, "maxItems": max_events}]}
    ingest_problem = {"allOf": [problem_schema, {
        "type": "object", "required": ["error", "reason"],
        "properties": {"error": {"type": "string", "description": "short machine code"},
                       "reason": {"type": "string", "description": "the detail again"}}}]}

    def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description, "content": {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/IngestProblem"}}}}
        if headers:
            out["headers"] = headers
        return out

    return {
        "openapi": "3.1.0",
        "info": {"title": "churnwatch ingest", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/events": {"post": {
                "operationId": "postEvents",
                "summary": "Validate events and produce the valid ones to churn.events",
                "security": [{"bearerAuth": []}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": body_schema},
                    "application/x-ndjson": {"schema": {
                        "type": "string", "description": "one JSON event per line"}}},
                    "description": f"at most {max_body_bytes} bytes and {max_events} events"},
                "responses": {
                    "200": {"description": "Processed: valid events are acknowledged by the "
                                           "broker; invalid ones are listed and dead-lettered",
                            "content": {"application/json": {"schema": result}}},
                    "400": error("Empty body, or a body that is not valid gzip/deflate"),
                    "401": error("Missing or unknown bearer token",
                                 {"WWW-Authenticate": {"schema": {"type": "string"}}}),
                    "408": error("The body did not arrive within the time or minimum rate"),
                    "413": error(f"Body larger than {max_body_bytes} bytes or more than "
                                 f"{max_events} events; nothing was accepted"),
                    "415": error("Content-Type is not application/json or "
                                 "application/x-ndjson, or Content-Encoding is not gzip, "
                                 "deflate or identity"),
                    "429": error("The feed's rate limit (events/s) is exceeded; nothing was "
                                 "accepted", _RETRY_AFTER),
                    "503": error("Too many requests in flight, or the broker did not "
                                 "acknowledge in time; retry the whole batch", _RETRY_AFTER),
                }}},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": {"description": "alive", "content": {
                                     "application/json": {"schema": health}}}}}},
        },
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "a token from CHURNWATCH_INGEST_TOKENS_FILE; it names the feed"}},
            "schemas": {"Event": event, **schemas, "IngestProblem": ingest_problem},
        },
    }


def reason_kind(reason: str) -> str:
    """A bounded label for a rejection reason (metrics and the response)."""
    if reason.startswith("event larger"):
        return "too_large"
    if ("malformed" in reason or "truncated" in reason or reason.startswith("invalid JSON")
            or "nested too deeply" in reason):
        return "malformed"
    if reason.startswith("Expected `object`"):
        return "not_an_object"
    if "missing required field" in reason:
        return "missing_field"
    if reason.endswith("at `$.type`"):
        return "unknown_type"
    if reason.startswith("subscriber_id") or reason.endswith("at `$.subscriber_id`"):
        return "subscriber_id"
    if reason.startswith("ts ") or reason.endswith("at `$.ts`"):
        return "ts"
    return "invalid_value"
