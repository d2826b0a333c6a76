"""The event contract (docs/contract.md §2): decode, validate and normalise subscriber events.

A Kafka message or HTTP body holds one JSON event, a JSON array of events, or NDJSON.
:func:`decode_payload` turns such bytes into valid :class:`Event` records and
:class:`Rejected` entries (index + reason) without ever raising on bad input;
:func:`decode_plain` is its fast path for many records of one plain JSON event each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union

import msgspec
import orjson

from churnwatch.core.errors import EventError

MAX_EVENT_BYTES = 64 * 1024
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_AMOUNT = 1e9
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

EVENT_TYPES = (
    "spend",
    "login",
    "complaint",
    "usage",
    "plan_change",
    "profile",
    "churn",
    "active",
    "outcome",
)
TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
COMPLAINT_CATEGORIES = ("network", "billing", "service", "other")
# what a retention action's contact came to (an ``outcome`` event's ``result``)
OUTCOME_RESULTS = ("accepted", "declined", "no_contact")
OutcomeResult = Literal["accepted", "declined", "no_contact"]

_Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
_RFC3339 = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
            r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")
# ``ts``'s range and format are checked by parse_ts (with its own reasons); the JSON Schema
# annotations below only document them
_Ts = Union[
    Annotated[int, msgspec.Meta(
        description="event time, epoch milliseconds (2000-01-01 .. 2100-01-01)",
        extra_json_schema={"minimum": MIN_TS_MS, "exclusiveMaximum": MAX_TS_MS})],
    Annotated[str, msgspec.Meta(
        description="event time, RFC 3339 with a UTC offset (2000-01-01 .. 2100-01-01)",
        extra_json_schema={"format": "date-time", "pattern": _RFC3339})],
]
_EventId = Annotated[str, msgspec.Meta(
    min_length=1, max_length=128,
    description="unique per event: a repeated event_id changes nothing downstream")]
_SubscriberId = Annotated[str, msgspec.Meta(
    min_length=1, max_length=64,
    description="a phone number in any usual format (normalised to +digits: '+44 7911-123456', "
                "'0044 7911 123456' and '+447911123456' are one subscriber) or an opaque id "
                "without whitespace")]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


# gc=False (here and on Event): their fields are strings, numbers and a dict of numbers, so
# they can never be part of a reference cycle; untracked, the ~2 of them an event neither
# count towards nor lengthen the collector's young-generation passes
class _Base(msgspec.Struct, tag_field="type", frozen=True, forbid_unknown_fields=False,
            gc=False):
    event_id: _EventId
    subscriber_id: _SubscriberId
    ts: _Ts


class SpendEvent(_Base, tag="spend", frozen=True):
    """Money the subscriber spent (`amount` in currency units)."""

    amount: _Amount
    kind: Literal["recharge", "bill", "purchase"] | None = None


class LoginEvent(_Base, tag="login", frozen=True):
    """An app or web login."""

    channel: Literal["app", "web"] | None = None


class ComplaintEvent(_Base, tag="complaint", frozen=True):
    """A complaint or care ticket."""

    category: Literal["network", "billing", "service", "other"]


class UsageEvent(_Base, tag="usage", frozen=True):
    """Consumption: data, voice minutes, messages."""

    data_mb: _Amount = 0.0
    voice_min: _Amount = 0.0
    sms: _Amount = 0.0


class PlanChangeEvent(_Base, tag="plan_change", frozen=True):
    """A plan switch (up- or downgrade, derived from the fee)."""

    plan: _Name
    monthly_fee: _Amount


class ProfileEvent(_Base, tag="profile", frozen=True):
    """A BSS snapshot: plan, tenure and attributes (name → number) for the model."""

    plan: _Name | None = None
    tenure_months: Annotated[float, msgspec.Meta(ge=0, le=1200)] | None = None
    attrs: dict[_Name, Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]] = {}


class ChurnEvent(_Base, tag="churn", frozen=True):
    """The subscriber left (port-out, cancel): a positive label."""

    reason: str | None = None


class ActiveEvent(_Base, tag="active", frozen=True):
    """The subscriber is confirmed active (e.g. renewed): a negative label."""


class OutcomeEvent(_Base, tag="outcome", frozen=True):
    """The result of a retention action on one of the subscriber's alerts."""

    alert_id: _Name
    result: OutcomeResult


# one event as producers send it (docs/contract.md §2); unknown fields are ignored
AnyEvent = Union[
    SpendEvent, LoginEvent, ComplaintEvent, UsageEvent, PlanChangeEvent, ProfileEvent,
    ChurnEvent, ActiveEvent, OutcomeEvent,
]


class Event(msgspec.Struct, frozen=True, gc=False):
    """A valid, normalised event. ``ts`` is epoch milliseconds (UTC)."""

    event_id: str
    subscriber_id: str
    type: str
    ts: int
    amount: float = 0.0
    category: str | None = None
    data_mb: float = 0.0
    voice_min: float = 0.0
    sms: float = 0.0
    plan: str | None = None
    monthly_fee: float | None = None
    tenure_months: float | None = None
    attrs: dict[str, float] | None = None
    reason: str | None = None
    alert_id: str | None = None
    result: str | None = None


class Rejected(msgspec.Struct, frozen=True):
    """An input record that is not a valid event: its position and why."""

    index: int
    reason: str
    raw: bytes


_decoder = msgspec.json.Decoder(AnyEvent)
_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_value_decoder = msgspec.json.Decoder(msgspec.Raw)
_TOO_DEEP = "JSON nested too deeply"
_PHONE_CHARS = re.compile(r"^\(?\+?[0-9][0-9 ()./-]*$")
_NON_DIGITS = re.compile(r"[^0-9]")


# raw subscriber id → canonical: ids repeat in every batch, and the regexes cost ~3 µs an
# event. A plain dict (emptied when full) rather than functools.lru_cache: decode_plain reads
# it inline, at a third of the cost of a call through the cache.
_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX = 1 << 17


def normalise_subscriber(raw: str) -> str:
    """Canonical subscriber id: phone numbers become ``+digits``; pseudonyms are kept.

    ``+44 7911-123456``, ``(+44) 7911 123456``, ``0044 7911 123456`` and ``+447911123456``
    are one subscriber.
    A number without an international prefix keeps its digits only (no country is guessed).
    """
    canonical = _CANONICAL.get(raw)
    if canonical is None:
        canonical = _canonical_subscriber(raw)
        if len(_CANONICAL) >= _CANONICAL_MAX:
            _CANONICAL.clear()
        _CANONICAL[raw] = canonical
    return canonical


def _canonical_subscriber(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise EventError("subscriber_id is empty")
    if _PHONE_CHARS.match(value):
        digits = _NON_DIGITS.sub("", value)
        if value.lstrip("(").startswith("+"):
            canonical = "+" + digits
        elif digits.startswith("00"):
            canonical = "+" + digits[2:]
        else:
            canonical = digits
        if not 5 <= len(canonical.lstrip("+")) <= 15:
            raise EventError("subscriber_id is not a valid phone number (5-15 digits)")
        return canonical
    if any(ch.isspace() or ord(ch) < 32 or ch in "{}" for ch in value):
        raise EventError("subscriber_id contains whitespace, control characters or braces")
    return value


def parse_ts(value: int | str) -> int:
    """Epoch milliseconds from an int (ms) or an RFC 3339 string; range 2000..2100."""
    if isinstance(value, str):
        text = value.strip()
        if not (20 <= len(text) <= 40) or text[10:11] not in ("T", "t", " "):
            raise EventError("ts is not an RFC 3339 timestamp")
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise EventError("ts is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise EventError("ts has no UTC offset (RFC 3339 requires one)")
        # exact integer arithmetic: int(timestamp() * 1000) loses a millisecond to float
        # rounding for some instants (e.g. ...865.353 → ...865352)
        ms = (parsed - _EPOCH) // timedelta(milliseconds=1)
    else:
        ms = value
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise EventError("ts out of range (2000-01-01 .. 2100-01-01, epoch milliseconds)")
    return ms


# per event type: its normalised Event from the decoded struct, the canonical subscriber id and
# the time in ms (positional construction: about half the cost of keywords, on the hot path)
_BUILD: dict[type, Callable[[Any, str, int], Event]] = {
    LoginEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "login", ts),
    UsageEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "usage", ts, 0.0, None,
                                          ev.data_mb, ev.voice_min, ev.sms),
    SpendEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "spend", ts, ev.amount),
    ComplaintEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "complaint", ts, 0.0,
                                              ev.category),
    PlanChangeEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "plan_change", ts,
                                               plan=ev.plan, monthly_fee=ev.monthly_fee),
    ProfileEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "profile", ts, plan=ev.plan,
                                            tenure_months=ev.tenure_months,
                                            attrs=dict(ev.attrs) or None),
    ChurnEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "churn", ts, reason=ev.reason),
    ActiveEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "active", ts),
    OutcomeEvent: lambda ev, sid, ts: Event(ev.event_id, sid, "outcome", ts,
                                            alert_id=ev.alert_id, result=ev.result),
}


def _normalise(ev: AnyEvent) -> Event:
    sid = normalise_subscriber(ev.subscriber_id)  # first: its reason wins over the time's
    ts = ev.ts
    if ts.__class__ is not int or not MIN_TS_MS <= ts < MAX_TS_MS:
        ts = parse_ts(ts)
    return _BUILD[ev.__class__](ev, sid, ts)


def _reason(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    return str(exc).replace("\n", " ")[:200]


def decode_event(raw: bytes) -> Event:
    """Decode and validate one JSON event; raise :class:`EventError` with the reason."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        ev = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise EventError(_reason(exc)) from None
    except RecursionError:
        raise EventError(_TOO_DEEP) from None
    except UnicodeDecodeError:  # msgspec raises it for invalid UTF-8 inside a string
        raise EventError("not valid UTF-8") from None
    return _normalise(ev)


def decode_plain(payloads: Sequence[bytes]) -> tuple[list[Event], list[int], list[int]]:
    """The valid events of the payloads that are one plain JSON object each (the common
    record: starts with ``{``, ends with ``}``, no newline, at most MAX_EVENT_BYTES), the
    index of each one's payload, and the indices of all the other payloads (those not that
    plain, and those that fail), left for :func:`decode_payload`.

    A measured hot path: one tight loop over :func:`decode_event`'s steps for a payload
    :func:`decode_payload` would treat as a single record, so a payload taken here gives
    exactly the event ``decode_payload`` gives, and one that fails here is decoded there
    again (with its reason), never rejected here.
    """
    events: list[Event] = []
    origins: list[int] = []
    rest: list[int] = []
    decode = _decoder.decode
    build = _BUILD
    known = _CANONICAL.get
    subscriber = normalise_subscriber
    add_event = events.append
    add_origin = origins.append
    brace, close, newline = ord("{"), ord("}"), ord("\n")  # ints: the byte tests use memchr
    for n, raw in enumerate(payloads):
        if (not raw or raw[0] != brace or raw[-1] != close or len(raw) > MAX_EVENT_BYTES
                or newline in raw):
            rest.append(n)
            continue
        try:
            ev = decode(raw)
            sid = known(ev.subscriber_id) or subscriber(ev.subscriber_id)
            ts = ev.ts
            if ts.__class__ is not int or not MIN_TS_MS <= ts < MAX_TS_MS:
                ts = parse_ts(ts)
        except (msgspec.ValidationError, msgspec.DecodeError, EventError, RecursionError,
                UnicodeDecodeError):
            rest.append(n)
            continue
        add_event(build[ev.__class__](ev, sid, ts))
        add_origin(n)
    return events, origins, rest


def split_records(payload: bytes) -> list[bytes]:
    """One JSON object, a JSON array of objects, or NDJSON → raw records.

    Array elements are sliced out as their original bytes (nothing is re-encoded, so each
    element is validated exactly as if it had been sent alone). A payload that is not valid
    JSON as a whole array raises EventError. A single object spread over several lines
    (pretty-printed) is one record, not NDJSON.
    """
    body = payload.strip()
    if body.startswith(b"["):
        try:
            return [bytes(item) for item in _array_decoder.decode(body)]
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise EventError(f"invalid JSON array: {_reason(exc)}") from None
        except RecursionError:
            raise EventError(f"invalid JSON array: {_TOO_DEEP}") from None
        except UnicodeDecodeError:
            raise EventError("invalid JSON array: not valid UTF-8") from None
    if b"\n" in body:
        try:
            _value_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return [line for line in body.split(b"\n") if line.strip()]
    return [body]


def decode_payload(payload: bytes) -> tuple[list[Event], list[Rejected]]:
    """Decode a message/body into valid events and rejected records (never raises)."""
    events: list[Event] = []
    rejected: list[Rejected] = []
    try:
        records = split_records(payload)
    except EventError as exc:
        return events, [Rejected(index=0, reason=exc.reason, raw=payload.strip()[:MAX_EVENT_BYTES])]
    for index, raw in enumerate(records):
        try:
            events.append(decode_event(raw))
        except EventError as exc:
            rejected.append(Rejected(index=index, reason=exc.reason, raw=raw[:MAX_EVENT_BYTES]))
    return events, rejected


def encode_events(events: list[dict]) -> bytes:
    """Pack raw event dicts into one multi-event message (a JSON array)."""
    return orjson.dumps(events)
