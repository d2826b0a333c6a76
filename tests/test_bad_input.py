"""Bad input on churn.events, end to end: every rejected record lands on churn.dlq with a
reason and is counted, the worker neither crashes nor stalls, and valid events sent after
(and between) the garbage are still processed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from churnwatch.core.events import decode_payload
from churnwatch.infra.config import DLQ_TOPIC, EVENTS_TOPIC
from tests.support.stream_feed import NOW, Feed
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration
PHONE = "+447700900123"
PHONE_FORMATS = ["+44 7700 900123", "0044 7700 900123", "+44-7700-900-123", "(+44) 7700 900123",
                 "+44.7700.900.123", " +447700900123 ", "0044(7700)900123"]


def _ev(n: int, **fields: object) -> dict:
    return {"event_id": f"bad-{n}", "subscriber_id": "sub-bad", "type": "login", "ts": NOW,
            **fields}


def bad_messages() -> list[bytes]:
    """One Kafka message per kind of garbage (some messages mix valid and invalid records)."""
    big = "x" * 70_000
    deep = b'{"a":' * 200_000 + b"1" + b"}" * 200_000
    return [
        os.urandom(512),  # garbage bytes
        b"\x00\xff\xfe\xfd not even text",
        b'{"event_id":"u1","subscriber_id":"+44\xff\xfe","type":"login","ts":1778000000000}',
        b'{"event_id": "t1", "subscriber_id": "+4477009',  # truncated JSON
        b'[{"event_id": "t2", "subscriber_id": "a", "type": "login", "ts": 17',  # truncated array
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting (array)
        deep,  # deep nesting (object)
        orjson.dumps(_ev(1, type="profile", attrs={"a": {"b": {"c": {"d": 1}}}})),
        b'{"event_id":"n1","subscriber_id":"s","type":"spend","ts":1778000000000,'
        b'"amount":1e400}',  # huge number (inf)
        orjson.dumps(_ev(2, type="spend", amount=2 ** 63)),
        b'{"event_id":"n2","subscriber_id":"s","type":"spend","ts":1778000000000,'
        b'"amount":123456789012345678901234567890123456789}',
        b'{"event_id":"n5","subscriber_id":"s","type":"login","ts":' + b"9" * 40 + b"}",
        b'{"event_id":"n3","subscriber_id":"s","type":"spend","ts":1778000000000,"amount":NaN}',
        b'{"event_id":"n4","subscriber_id":"s","type":"spend","ts":1778000000000,'
        b'"amount":Infinity}',
        orjson.dumps(_ev(4, type="spend", amount="NaN")),
        orjson.dumps(_ev(5, type="spend", amount=-1)),
        orjson.dumps(_ev(6, ts=0)),  # 1970
        orjson.dumps(_ev(7, ts="1970-01-01T00:00:00Z")),
        orjson.dumps(_ev(8, ts="2100-01-01T00:00:00Z")),
        orjson.dumps(_ev(9, ts=4_102_444_800_000)),
        orjson.dumps(_ev(10, ts="2026-05-10T12:00:00")),  # no UTC offset
        orjson.dumps(_ev(11, type="teleport")),  # unknown types
        orjson.dumps(_ev(12, type="")),
        orjson.dumps({k: v for k, v in _ev(13).items() if k != "subscriber_id"}),
        orjson.dumps(_ev(14, subscriber_id="")),
        orjson.dumps(_ev(15, subscriber_id="   ")),
        orjson.dumps(_ev(16, subscriber_id=None)),
        orjson.dumps(_ev(17, subscriber_id="+1 23")),  # too short for a phone number
        orjson.dumps(_ev(18, subscriber_id="+44 7700 900123 4567 89")),  # too long
        orjson.dumps(_ev(19, subscriber_id="sub\nwith\tcontrol")),
        orjson.dumps(_ev(20, event_id="")),
        orjson.dumps(_ev(21, type="churn", reason=big)),  # one event over 64 KB
        b"[" + b",".join([orjson.dumps(_ev(22 + i, type="churn", reason="y" * 60_000))
                          for i in range(14)]) + b"]",  # an oversize message, ~840 KB
        orjson.dumps([_ev(40, ts=0), {"event_id": "mixed-ok", "subscriber_id": "+447700900999",
                                      "type": "login", "ts": NOW - 86_400_000}]),
        b"null", b"42", b'"a string"', b"[]", b"{}", b"[1, 2, 3]",
    ]


async def _send(bootstrap: str, messages: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=8 << 20)
    await producer.start()
    try:
        for i, value in enumerate(messages):
            await producer.send_and_wait(EVENTS_TOPIC, value, partition=i % 2)
    finally:
        await producer.stop()


def test_garbage_is_dead_lettered_with_reasons_and_valid_events_still_alert(
        worker: Worker, tmp_path: Path) -> None:
    garbage = bad_messages()
    expected = {}
    for i, value in enumerate(garbage):
        _, rejected = decode_payload(value)
        for r in rejected:
            expected[(i % 2, i, r.index)] = r.reason
    feed = Feed()  # a valid churner, sent after the garbage: must still alert
    for n, fmt in enumerate(PHONE_FORMATS * 3):  # the same subscriber in many formats
        feed.add(fmt, "login", NOW - 8 * 86_400_000 - n * 3_600_000, channel="app")
    feed.complaints(PHONE, 2)
    worker.start()
    asyncio.run(_send(worker.broker.bootstrap, garbage))
    path = feed.write(tmp_path / "valid.ndjson")
    assert worker.cli("replay", str(path)).returncode == 0
    worker.wait_caught_up()
    worker.wait_for(lambda: len(worker.alerts()) == 1, timeout=30, what="the alert")
    assert worker.alerts()[0]["subscriber_id"] == PHONE  # every format is one subscriber
    assert worker.proc is not None and worker.proc.poll() is None

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(worker.broker.bootstrap,
                                                                DLQ_TOPIC))]
    invalid = [d for d in letters if d["kind"] == "invalid"]
    assert all(d["reason"] and d["topic"] == EVENTS_TOPIC for d in invalid)
    assert len(invalid) == len(expected) >= len(garbage) - 2
    assert sorted(d["reason"] for d in invalid) == sorted(expected.values())
    assert worker.metric("churnwatch_dlq_records_total", kind="invalid") == len(expected)
    assert not [d for d in letters if d["kind"] == "internal"]  # nothing took a batch down
    reasons = " | ".join(sorted({d["reason"] for d in invalid}))
    for needle in ("larger than", "nested too deeply", "ts out of range", "subscriber_id",
                   "RFC 3339", "UTF-8"):
        assert needle in reasons, (needle, reasons)
    report = worker.cli("inspect", PHONE, "--json")
    assert report.returncode == 0
    assert orjson.loads(report.stdout)["features"]["logins_prev28"] == len(PHONE_FORMATS) * 3
