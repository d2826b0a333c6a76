"""The event contract (docs/contract.md §2): decoding, validation, normalisation, never raising."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnwatch.core.errors import EventError
from churnwatch.core.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    Event,
    decode_event,
    decode_payload,
    normalise_subscriber,
    parse_ts,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def base(etype: str, n: int = 1, **extra: object) -> dict:
    return {"event_id": f"e{n}", "subscriber_id": "sub-1", "type": etype, "ts": T0 + n, **extra}


# One valid example of every event type, with the Event it must decode to.
VALID: list[tuple[dict, dict]] = [
    (base("spend", 1, amount=12.5, kind="recharge"), {"amount": 12.5}),
    (base("spend", 2, amount=0), {"amount": 0.0}),
    (base("login", 3, channel="app"), {}),
    (base("login", 4), {}),
    (base("complaint", 5, category="network"), {"category": "network"}),
    (base("complaint", 6, category="other"), {"category": "other"}),
    (base("usage", 7, data_mb=150.25, voice_min=3, sms=2), {"data_mb": 150.25, "voice_min": 3.0,
                                                            "sms": 2.0}),
    (base("usage", 8, voice_min=1.5), {"data_mb": 0.0, "voice_min": 1.5, "sms": 0.0}),
    (base("plan_change", 9, plan="basic-10", monthly_fee=9.99), {"plan": "basic-10",
                                                                 "monthly_fee": 9.99}),
    (base("profile", 10, plan="family", tenure_months=27, attrs={"arpu": 31.5, "devices": 3}),
     {"plan": "family", "tenure_months": 27.0, "attrs": {"arpu": 31.5, "devices": 3.0}}),
    (base("profile", 11), {"plan": None, "tenure_months": None, "attrs": None}),
    (base("churn", 12, reason="port-out"), {"reason": "port-out"}),
    (base("churn", 13), {"reason": None}),
    (base("active", 14), {}),
    (base("outcome", 15, alert_id="abc123", result="accepted"), {"alert_id": "abc123",
                                                                 "result": "accepted"}),
]


def expected_event(raw: dict, fields: dict) -> Event:
    return Event(event_id=raw["event_id"], subscriber_id=raw["subscriber_id"], type=raw["type"],
                 ts=raw["ts"], **fields)


def test_every_type_is_covered() -> None:
    assert {raw["type"] for raw, _ in VALID} == set(EVENT_TYPES)


@pytest.mark.parametrize(("raw", "fields"), VALID, ids=[r["event_id"] for r, _ in VALID])
def test_valid_single_event(raw: dict, fields: dict) -> None:
    events, rejected = decode_payload(orjson.dumps(raw))
    assert rejected == []
    assert events == [expected_event(raw, fields)]


def test_valid_array_and_ndjson_batches_keep_order() -> None:
    raws = [r for r, _ in VALID]
    expected = [expected_event(r, f) for r, f in VALID]
    array = orjson.dumps(raws)
    ndjson = b"\n".join(orjson.dumps(r) for r in raws) + b"\n"
    crlf = b"\r\n".join(orjson.dumps(r) for r in raws)
    for payload in (array, ndjson, crlf, b"  \n" + ndjson + b"\n\n"):
        events, rejected = decode_payload(payload)
        assert rejected == []
        assert events == expected


def test_pretty_printed_single_event_is_one_event() -> None:
    """A single JSON object spread over several lines is one event, not NDJSON lines."""
    raw = base("spend", 1, amount=3)
    events, rejected = decode_payload(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    assert rejected == []
    assert events == [expected_event(raw, {"amount": 3.0})]


def test_rfc3339_timestamps() -> None:
    cases = {
        "2026-01-01T00:00:00Z": T0,
        "2026-01-01T00:00:00.123Z": T0 + 123,
        "2026-01-01t00:00:00z": T0,
        "2026-01-01T02:30:00+02:30": T0,
        "2025-12-31T19:00:00-05:00": T0,
        "2026-01-01 00:00:01+00:00": T0 + 1000,
    }
    for text, ms in cases.items():
        events, rejected = decode_payload(orjson.dumps({**base("login"), "ts": text}))
        assert rejected == [], text
        assert events[0].ts == ms, text


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999),
       st.sampled_from([0, 60, -300, 330, -720, 840]))
def test_rfc3339_roundtrip_is_exact_to_the_millisecond(ms: int, offset_min: int) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    text = when.astimezone(tz).isoformat(timespec="milliseconds")
    assert parse_ts(text) == ms
    assert parse_ts(ms) == ms


def test_unknown_fields_are_ignored() -> None:
    raw = {**base("spend", amount=5), "channel_extra": {"deep": [1, 2]}, "x": None, "y": "z"}
    events, rejected = decode_payload(orjson.dumps(raw))
    assert rejected == []
    assert events == [expected_event(base("spend", amount=5), {"amount": 5.0})]


GOOD_A = orjson.dumps(base("login", 101))
GOOD_B = orjson.dumps(base("spend", 102, amount=7))
GOOD_EVENTS = [expected_event(base("login", 101), {}),
               expected_event(base("spend", 102, amount=7), {"amount": 7.0})]


def _ev(**over: object) -> bytes:
    raw = {**base("spend", 9, amount=1)}
    raw.update(over)
    return orjson.dumps({k: v for k, v in raw.items() if v is not ...})


# (name, one invalid record as it appears on the wire, words expected in the reason)
INVALID: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("missing_subscriber", _ev(subscriber_id=...), ("subscriber_id",)),
    ("empty_subscriber", _ev(subscriber_id=""), ("subscriber_id",)),
    ("blank_subscriber", _ev(subscriber_id="   "), ("subscriber_id",)),
    ("missing_event_id", _ev(event_id=...), ("event_id",)),
    ("long_event_id", _ev(event_id="x" * 129), ("event_id",)),
    ("missing_ts", _ev(ts=...), ("ts",)),
    ("negative_amount", _ev(amount=-0.01), ("amount",)),
    ("string_amount", _ev(amount="12"), ("amount",)),
    ("missing_amount", _ev(amount=...), ("amount",)),
    ("nan_literal", GOOD_B.replace(b'"amount":7', b'"amount":NaN'), ("malformed",)),
    ("infinity_literal", GOOD_B.replace(b'"amount":7', b'"amount":Infinity'), ("malformed",)),
    ("huge_number", GOOD_B.replace(b'"amount":7', b'"amount":1e400'), ("amount",)),
    ("ts_1970_ms", _ev(ts=1000), ("ts", "range")),
    ("ts_1970_text", _ev(ts="1970-01-01T00:00:00Z"), ("ts", "range")),
    ("ts_2100_ms", _ev(ts=4_102_444_800_000), ("ts", "range")),
    ("ts_2100_text", _ev(ts="2100-01-01T00:00:00Z"), ("ts", "range")),
    ("ts_no_offset", _ev(ts="2026-01-01T00:00:00"), ("ts",)),
    ("ts_not_a_date", _ev(ts="yesterday at noon, roughly"), ("ts",)),
    ("ts_float", _ev(ts=1.5e12), ("ts",)),
    ("unknown_type", _ev(type="teleport"), ("type",)),
    ("bad_category", orjson.dumps(base("complaint", 9, category="weather")), ("category",)),
    ("missing_category", orjson.dumps(base("complaint", 9)), ("category",)),
    ("bad_outcome", orjson.dumps(base("outcome", 9, alert_id="a", result="maybe")), ("result",)),
    ("negative_usage", orjson.dumps(base("usage", 9, data_mb=-1)), ("data_mb",)),
    ("oversize", _ev(pad="x" * MAX_EVENT_BYTES), ("larger",)),
    ("not_an_object", b"[1, 2]"[1:2], ("object",)),
    ("garbage_bytes", b"\xff\xfe\x00garbage\x80", ("malformed",)),
    ("truncated", GOOD_B[:-9], ("truncated",)),
    ("deep_object", GOOD_B[:-1] + b',"x":' + b'{"a":' * 3000 + b"1" + b"}" * 3001, ("deep",)),
    ("deep_array", GOOD_B[:-1] + b',"x":' + b"[" * 3000 + b"]" * 3001, ("deep",)),
]


@pytest.mark.parametrize(("name", "bad", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_record_is_rejected_and_neighbours_survive_in_ndjson(
        name: str, bad: bytes, words: tuple[str, ...]) -> None:
    payload = GOOD_A + b"\n" + bad + b"\n" + GOOD_B
    events, rejected = decode_payload(payload)
    assert events == GOOD_EVENTS
    assert len(rejected) == 1
    assert rejected[0].index == 1
    assert rejected[0].raw == bad[:MAX_EVENT_BYTES]
    reason = rejected[0].reason.lower()
    assert all(w in reason for w in words), reason
    assert "\n" not in reason and len(reason) <= 200


# Records that break the JSON syntax of a whole array are covered by the malformed-array test.
_NOT_IN_ARRAY = ("nan_literal", "infinity_literal", "garbage_bytes", "truncated", "deep_object",
                 "deep_array")
IN_ARRAY = [c for c in INVALID if c[0] not in _NOT_IN_ARRAY]


@pytest.mark.parametrize(("name", "bad", "words"), IN_ARRAY, ids=[c[0] for c in IN_ARRAY])
def test_invalid_element_in_json_array_is_rejected_and_neighbours_survive(
        name: str, bad: bytes, words: tuple[str, ...]) -> None:
    """Syntactically valid JSON arrays: each element stands on its own."""
    payload = b"[" + GOOD_A + b", " + bad + b",\n" + GOOD_B + b"]"
    events, rejected = decode_payload(payload)
    assert events == GOOD_EVENTS
    assert [r.index for r in rejected] == [1]
    reason = rejected[0].reason.lower()
    assert all(w in reason for w in words), reason


@pytest.mark.parametrize(("payload", "word"), [
    (b"[" + GOOD_A + b", " + GOOD_B.replace(b":7", b":NaN") + b"]", "malformed"),
    (b"[" + GOOD_A + b", " + GOOD_B, "truncated"),
    (b"[" + GOOD_A + b"] trailing", "trailing"),
    (b"[" * 5000 + b"]" * 5000, "deep"),
], ids=["nan", "truncated", "trailing", "too_deep"])
def test_malformed_array_is_one_rejection_with_a_json_reason(payload: bytes, word: str) -> None:
    """Not valid JSON as a whole: one rejection saying why (not "expected object, got array")."""
    events, rejected = decode_payload(payload)
    assert events == []
    assert len(rejected) == 1 and rejected[0].index == 0
    reason = rejected[0].reason.lower()
    assert word in reason and "got `array`" not in reason, reason


def test_moderately_nested_unknown_field_in_array_is_ignored() -> None:
    """600 levels: too deep to re-encode with orjson (this used to raise TypeError), but within
    the parser's limit, so the element is judged on its own and the unknown field ignored."""
    deep = GOOD_B[:-1] + b',"x":' + b"[" * 600 + b"]" * 600 + b',"y":' + b'{"a":' * 600 \
        + b"1" + b"}" * 601
    events, rejected = decode_payload(b"[" + GOOD_A + b"," + deep + b"]")
    assert rejected == []
    assert events == GOOD_EVENTS


def test_array_with_an_element_nested_beyond_the_limit_is_rejected_whole() -> None:
    """Beyond ~1000 levels the array itself cannot be split safely: one rejection, no crash."""
    deep = GOOD_B[:-1] + b',"x":' + b"[" * 3000 + b"]" * 3001
    events, rejected = decode_payload(b"[" + GOOD_A + b"," + deep + b"]")
    assert events == []
    assert len(rejected) == 1 and "deep" in rejected[0].reason


@pytest.mark.parametrize("payload", [b"", b"   ", b"\n\n", b"[]"])
def test_empty_payloads(payload: bytes) -> None:
    events, rejected = decode_payload(payload)
    assert events == []
    assert len(rejected) == (0 if payload == b"[]" else 1)


def test_decode_event_raises_event_error_with_reason() -> None:
    with pytest.raises(EventError) as info:
        decode_event(_ev(amount=-1))
    assert "amount" in info.value.reason
    with pytest.raises(EventError) as info:
        decode_event(b"x" * (MAX_EVENT_BYTES + 1))
    assert str(MAX_EVENT_BYTES) in info.value.reason


# --------------------------------------------------------------------------- subscriber ids
@pytest.mark.parametrize("raw", ["+44 7911-123456", "0044 7911 123456", "+447911123456",
                                 " +44 (7911) 123.456 ", "0044-7911-123456", "(+44) 7911 123456",
                                 "(0044)7911-123456"])
def test_phone_numbers_normalise_to_one_id(raw: str) -> None:
    assert normalise_subscriber(raw) == "+447911123456"
    events, _ = decode_payload(orjson.dumps({**base("login"), "subscriber_id": raw}))
    assert events[0].subscriber_id == "+447911123456"


@pytest.mark.parametrize(("raw", "canonical"), [
    ("07911 123456", "07911123456"),  # national number: digits only, no country guessed
    ("sub-1", "sub-1"),
    ("Pseudo_ABC.42", "Pseudo_ABC.42"),
    ("c2f1e0aa-9b7d-4e0b-a1f1-0c2d9f3e7b11", "c2f1e0aa-9b7d-4e0b-a1f1-0c2d9f3e7b11"),
    ("  tok:xyz  ", "tok:xyz"),
])
def test_national_numbers_and_pseudonyms(raw: str, canonical: str) -> None:
    assert normalise_subscriber(raw) == canonical


@pytest.mark.parametrize("raw", ["", "   ", "+12", "12 34", "tok en", "a\tb", "a\x01b"])
def test_bad_subscriber_ids_raise(raw: str) -> None:
    with pytest.raises(EventError):
        normalise_subscriber(raw)


# --------------------------------------------------------------------------- fuzzing
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=5),
    max_leaves=25,
)
valid_raw = st.sampled_from([r for r, _ in VALID])
# objects that look like events with random (often wrong) field values
event_like = st.fixed_dictionaries(
    {"event_id": st.one_of(st.text(max_size=3), json_scalars),
     "subscriber_id": st.one_of(st.sampled_from(["+44 7911 123456", "sub", ""]), json_scalars),
     "type": st.one_of(st.sampled_from(EVENT_TYPES), json_scalars),
     "ts": st.one_of(st.integers(min_value=T0 - 10**13, max_value=T0 + 10**13), json_scalars)},
    optional={"amount": json_scalars, "category": json_scalars, "attrs": json_values,
              "result": json_scalars, "monthly_fee": json_scalars},
)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise(payload: bytes) -> None:
    events, rejected = decode_payload(payload)
    assert all(isinstance(e, Event) for e in events)
    assert all(r.reason for r in rejected)


@FUZZ
@given(json_values | event_like)
def test_fuzz_json_values_never_raise(value: object) -> None:
    events, rejected = decode_payload(orjson.dumps(value))
    assert len(events) + len(rejected) >= (0 if value == [] else 1)


@FUZZ
@given(st.lists(st.one_of(valid_raw.map(lambda r: ("ok", r)),
                          json_values.map(lambda v: ("junk", v)),
                          event_like.map(lambda v: ("maybe", v))), max_size=12),
       st.booleans())
def test_fuzz_arrays_and_ndjson_counts_add_up(items: list[tuple[str, object]],
                                              as_ndjson: bool) -> None:
    values = [v for _, v in items]
    if as_ndjson:  # a valid first line, then one JSON value per line
        payload = b"\n".join([GOOD_A, *(orjson.dumps(v) for v in values)])
        values = [orjson.loads(GOOD_A), *values]
        items = [("ok", values[0]), *items]
    else:
        payload = orjson.dumps(values)
    events, rejected = decode_payload(payload)
    assert len(events) + len(rejected) == len(values)
    assert len({r.index for r in rejected}) == len(rejected)
    assert all(0 <= r.index < len(values) and r.reason for r in rejected)
    # every known-valid item comes out, in order
    for index, (kind, _) in enumerate(items):
        if kind == "ok":
            assert index not in {r.index for r in rejected}
    valid_ids = [v["event_id"] for kind, v in items if kind == "ok"]
    got = iter(e.event_id for e in events)
    assert all(any(g == want for g in got) for want in valid_ids)
    for e in events:
        assert math.isfinite(e.amount) and e.amount >= 0
        assert 946_684_800_000 <= e.ts < 4_102_444_800_000


def test_braces_and_overlong_numbers_are_rejected() -> None:
    from churnwatch.core.errors import EventError

    for bad in ("a{b}", "}", "+4479111234567890", "0044791112345678901"):
        with pytest.raises(EventError):
            normalise_subscriber(bad)
    assert normalise_subscriber("00447911123456") == "+447911123456"


@pytest.mark.parametrize("raw", [
    b'{"event_id":"e1","subscriber_id":"(+60\xff\xff) 7700","type":"login","ts":1767225600000}',
    b'[{"event_id":"e\xc3","subscriber_id":"x","type":"login","ts":1767225600000}]',
    b'{"event_id":"e1","subscriber_id":"x","type":"login","ts":1767225600000}\n{"event_id":"\xfe"}',
])
def test_invalid_utf8_inside_a_string_is_rejected_not_raised(raw: bytes) -> None:
    """Found by atheris (tests/fuzz): msgspec raises UnicodeDecodeError for these."""
    events, rejected = decode_payload(raw)
    assert rejected and all(r.reason for r in rejected)
    assert [e.event_id for e in events] in ([], ["e1"])
