"""The intake's fast path for plain single-event records gives exactly what the general path
gives: the same events (field by field), the same record indices, the same dead letters with
the same reasons, on generated records of every shape (valid events of every type, invalid
values, whitespace, arrays, NDJSON, pretty-printed, unicode, invalid UTF-8, oversized, deep
nesting, undecodable markers)."""

from __future__ import annotations

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnwatch.core.errors import EventError
from churnwatch.core.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    AnyEvent,
    Event,
    decode_payload,
    decode_plain,
    normalise_subscriber,
    parse_ts,
)
from streams.intake import decode_records
from streams.records import DeadLetter, Record
from streams.undecodable import HEADER, reason_of

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_any = msgspec.json.Decoder(AnyEvent)
_TAIL = Event.__struct_fields__[4:]  # the fields after event_id, subscriber_id, type, ts


def reference_event(raw: bytes) -> Event:
    """The Event of a valid single event, built field by field by name (the contract:
    every Event field the type has, attrs as a dict or None)."""
    ev = _any.decode(raw)
    fields = {name: getattr(ev, name) for name in _TAIL if hasattr(ev, name)}
    if "attrs" in fields:
        fields["attrs"] = dict(fields["attrs"]) or None
    return Event(event_id=ev.event_id, subscriber_id=normalise_subscriber(ev.subscriber_id),
                 type=type(ev).__struct_config__.tag, ts=parse_ts(ev.ts), **fields)


def reference_records(records: list[Record]) -> tuple[list[Event], list[int], list[DeadLetter]]:
    """decode_records as a plain loop over decode_payload, record by record."""
    events: list[Event] = []
    origins: list[int] = []
    letters: list[DeadLetter] = []
    for n, rec in enumerate(records):
        if not rec.value and rec.headers and (why := reason_of(rec.headers)) is not None:
            letters.append(DeadLetter(
                f"undecodable: the Kafka client could not decode its record batch ({why})",
                "undecodable", rec.topic, rec.partition, rec.offset, -1, ""))
            continue
        valid, rejected = decode_payload(rec.value)
        events += valid
        origins += [n] * len(valid)
        letters += [DeadLetter(r.reason, "invalid", rec.topic, rec.partition, rec.offset,
                               r.index, r.raw.decode("utf-8", "replace")) for r in rejected]
    return events, origins, letters


# --------------------------------------------------------------------------- generators
_ids = st.sampled_from(["+44 7911 123456", "0044 7911 123456", "(+44) 7911-123456", "07911123456",
                        "sub-1", "Zoë-7", "", " ", "a b", "{x}", "123", "+1" + "2" * 20,
                        "x" * 64, "x" * 65])
_ts = st.one_of(
    st.integers(min_value=T0 - 10**12, max_value=T0 + 10**12),
    st.sampled_from([946_684_800_000, 946_684_799_999, 4_102_444_799_999, 4_102_444_800_000,
                     -1, 0, 2**63, 1.5e12, True, None, "2026-01-01T00:00:00Z",
                     "2026-01-01T00:00:00.123+02:00", "2026-01-01 00:00:00z",
                     "2026-01-01T00:00:00", " 2026-01-01T00:00:00Z ", "1999-12-31T23:59:59Z",
                     "2026-13-01T00:00:00Z", "yesterday", ""]))
_amount = st.one_of(st.floats(min_value=0, max_value=1e9), st.integers(0, 10**9),
                    st.sampled_from([-1, 1e9 + 1, "3", None, float("1e400")]))
_name = st.sampled_from(["basic", "Tarif für Familie", "", "x" * 65, None, 3])
_extra = {
    "spend": {"amount": _amount, "kind": st.sampled_from(["recharge", "bill", "gift", None])},
    "login": {"channel": st.sampled_from(["app", "web", "tv", None])},
    "complaint": {"category": st.sampled_from(["network", "billing", "service", "other",
                                               "weather", None])},
    "usage": {"data_mb": _amount, "voice_min": _amount, "sms": _amount},
    "plan_change": {"plan": _name, "monthly_fee": _amount},
    "profile": {"plan": _name, "tenure_months": st.sampled_from([0, 12.5, 1200, 1201, -1, None]),
                "attrs": st.one_of(st.dictionaries(st.sampled_from(["arpu", "devices", "", "ü"]),
                                                   st.floats(-1e13, 1e13), max_size=3),
                                   st.sampled_from([[], None, {"a": "b"}]))},
    "churn": {"reason": st.sampled_from(["port-out", None, 7])},
    "active": {},
    "outcome": {"alert_id": _name, "result": st.sampled_from(["accepted", "declined",
                                                              "no_contact", "maybe"])},
}


@st.composite
def events(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from([*EVENT_TYPES, "teleport", "LOGIN"]))
    raw = {"event_id": draw(st.sampled_from(["e1", "é-2", "", "x" * 129])),
           "subscriber_id": draw(_ids), "type": kind, "ts": draw(_ts)}
    for name, values in _extra.get(kind, {}).items():
        if draw(st.booleans()):  # fields are sometimes missing (required ones then fail)
            raw[name] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        raw["unknown"] = {"nested": [1, {"deep": "ok"}]}
    return raw


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    ev = draw(events())
    plain = orjson.dumps(ev)
    shape = draw(st.integers(0, 14))
    if shape <= 5:
        return plain  # the common record: most records take the fast path
    if shape == 6:
        return draw(st.sampled_from([b" ", b"\n", b"\t", b"\r\n"])) + plain + b" "
    if shape == 7:
        return b"[" + plain + b"," + orjson.dumps(draw(events())) + b"]"
    if shape == 8:
        return plain + b"\n" + orjson.dumps(draw(events())) + b"\n"
    if shape == 9:
        return orjson.dumps(ev, option=orjson.OPT_INDENT_2)
    if shape == 10:  # oversized: an unknown field padding it past the limit (or just under)
        pad = MAX_EVENT_BYTES - len(plain) - len(b',"pad":""') + draw(st.integers(-1, 1))
        return plain[:-1] + b',"pad":"' + b"p" * pad + b'"}'
    if shape == 11:  # invalid UTF-8 inside a string, or a truncated object
        return draw(st.sampled_from([plain.replace(b'"e', b'"\xff', 1), plain[:-2] + b"}",
                                     plain + b"}", b"{" + plain]))
    if shape == 12:  # nested beyond msgspec's limit in an unknown field
        return plain[:-1] + b',"deep":' + b"[" * 2000 + b"]" * 2000 + b"}"
    if shape == 13:
        return draw(st.sampled_from([b"{}", b"{ }", b"{\"type\":\"login\"}", b"[]", b"", b"null",
                                     b"{\"a\":1}{\"b\":2}"]))
    return plain.replace(b'"e', b'"\\u00e9', 1)  # an escaped non-ASCII character


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    values = draw(st.lists(payloads(), max_size=12))
    records = [Record("churn.events", n % 3, 100 + n, value) for n, value in enumerate(values)]
    for _ in range(draw(st.integers(0, 2))):  # markers of undecodable record batches
        at = draw(st.integers(0, len(records)))
        records.insert(at, Record("churn.events", 1, 99, b"", None,
                                  ((HEADER, b"CorruptRecordException"),)))
    return records


# --------------------------------------------------------------------------- properties
def test_every_type_is_decoded_as_the_reference_builds_it() -> None:
    extra = {"spend": {"amount": 2.5}, "complaint": {"category": "billing"},
             "usage": {"data_mb": 1.0, "voice_min": 2.0, "sms": 3.0},
             "plan_change": {"plan": "basic", "monthly_fee": 9.5},
             "profile": {"plan": "family", "tenure_months": 3, "attrs": {"arpu": 1.5}},
             "churn": {"reason": "port-out"},
             "outcome": {"alert_id": "a1", "result": "declined"}}
    raws = [orjson.dumps({"event_id": f"e{n}", "subscriber_id": "+44 7911 123456", "type": kind,
                          "ts": T0 + n, **extra.get(kind, {})})
            for n, kind in enumerate(EVENT_TYPES)]
    events, origins, rest = decode_plain(raws)
    assert rest == [] and origins == list(range(len(EVENT_TYPES)))
    assert events == [reference_event(raw) for raw in raws]
    assert [ev.type for ev in events] == list(EVENT_TYPES)


@FUZZ
@given(st.lists(payloads(), max_size=20))
def test_plain_payloads_decode_as_decode_payload_does(values: list[bytes]) -> None:
    events, origins, rest = decode_plain(values)
    assert sorted(origins + rest) == list(range(len(values)))
    for ev, n in zip(events, origins, strict=True):
        assert decode_payload(values[n]) == ([ev], [])
        assert ev == reference_event(values[n])
    for n in rest:  # left to the general path: not plain, or not a valid event
        value = values[n]
        plain = (value[:1] == b"{" and value[-1:] == b"}" and b"\n" not in value
                 and len(value) <= MAX_EVENT_BYTES)
        assert not plain or decode_payload(value)[1] != []


@FUZZ
@given(batches())
def test_decode_records_matches_the_record_by_record_loop(records: list[Record]) -> None:
    assert decode_records(records) == reference_records(records)


def test_a_batch_mixing_plain_records_and_arrays_keeps_record_order() -> None:
    one = orjson.dumps({"event_id": "a", "subscriber_id": "s1", "type": "login", "ts": T0})
    two = orjson.dumps({"event_id": "b", "subscriber_id": "s2", "type": "login", "ts": T0})
    records = [Record("t", 0, n, value) for n, value in
               enumerate([b"[" + one + b"," + two + b"]", two, b" " + one, b"{", one])]
    events, origins, letters = decode_records(records)
    assert [ev.event_id for ev in events] == ["a", "b", "b", "a", "a"]
    assert origins == [0, 0, 1, 2, 4]
    assert [(d.offset, d.index) for d in letters] == [(3, 0)]
    assert (events, origins, letters) == reference_records(records)


def test_a_bad_subscriber_id_is_the_reason_before_a_bad_time() -> None:
    raw = orjson.dumps({"event_id": "a", "subscriber_id": "a b", "type": "login", "ts": 5})
    for payload in (raw, b"[" + raw + b"]"):
        _, rejected = decode_payload(payload)
        assert [r.reason for r in rejected] == [
            "subscriber_id contains whitespace, control characters or braces"]
    _, _, letters = decode_records([Record("t", 0, 0, raw)])
    assert [d.reason for d in letters] == [
        "subscriber_id contains whitespace, control characters or braces"]


def test_the_subscriber_cache_stays_bounded_and_keeps_no_rejection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import churnwatch.core.events as events_module

    monkeypatch.setattr(events_module, "_CANONICAL", {})
    monkeypatch.setattr(events_module, "_CANONICAL_MAX", 4)
    raws = [f"+44 7911 {n:06d}" for n in range(10)] + ["sub-1", "+44 7911 000003"]
    assert [normalise_subscriber(raw) for raw in raws] == \
        [f"+447911{n:06d}" for n in range(10)] + ["sub-1", "+447911000003"]
    assert len(events_module._CANONICAL) <= 4
    for _ in range(2):
        with pytest.raises(EventError, match="whitespace"):
            normalise_subscriber("a b")
    assert "a b" not in events_module._CANONICAL
