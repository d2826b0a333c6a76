"""HTTP ingest (`churnwatch ingest`, streams/ingest.py) on the real broker: accepted events on
churn.events (feed field, partition by subscriber), every rejection reason with its DLQ record,
401/413/415/429/503, token rotation, `churnwatch send`, alerts end to end through a real worker,
a resent batch changing nothing, and schemathesis against /openapi.json."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, TopicPartition

from churnwatch.cli.send import send_stream
from churnwatch.core.events import normalise_subscriber
from churnwatch.dev.embedded import EmbeddedBroker
from churnwatch.infra.config import DLQ_TOPIC, EVENTS_TOPIC
from churnwatch.infra.kafka.offsets import high_watermarks
from churnwatch.infra.kafka.produce import partition_for
from streams.ingest_auth import TokenStore
from streams.ingest_ratelimit import FeedRateLimiter
from tests.support.ingest import (
    AUTH,
    FEED,
    JSON,
    TOKEN,
    TS,
    _client,
    _settings,
    _tokens,
    topics,  # noqa: F401  (a fixture)
)
from tests.support.worker import read_topic

pytestmark = pytest.mark.integration

NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}






def _event(i: int, sub: str = "+447700900001", **fields: object) -> dict:
    return {"event_id": f"ev-{i}", "subscriber_id": sub, "type": "login", "ts": TS + i,
            "channel": "app", **fields}






async def _read_partitions(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = await high_watermarks(consumer, topic)
        await consumer.seek_to_beginning(*parts)
        out: dict[int, list[bytes]] = {tp.partition: [] for tp in parts}
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += [r.value for r in records]
        return out
    finally:
        await consumer.stop()


def test_accepted_events_reach_churn_events_with_feed_packed_per_partition(
        topics: EmbeddedBroker, tmp_path: Path) -> None:
    spellings = ["+44 7700 900{:03d}", "0044 7700 900{:03d}", "+447700900{:03d}"]
    events = [_event(i, spellings[i % 3].format(i % 10), note="kept") for i in range(60)]
    events[5]["feed"] = "spoofed"  # the token decides the feed, not the body

    async def main() -> list[dict]:
        async with _client(_settings(topics, tmp_path)) as client:
            r1 = await client.post("/v1/events", data=orjson.dumps(events[:40]), headers=JSON)
            r2 = await client.post("/v1/events", headers=NDJSON,
                                   data=b"\n".join(orjson.dumps(e) for e in events[40:59]))
            r3 = await client.post("/v1/events", data=orjson.dumps(events[59]), headers=JSON)
            return [await r.json() for r in (r1, r2, r3)]

    bodies = asyncio.run(main())
    assert [b["accepted"] for b in bodies] == [40, 19, 1]
    assert all(b["rejected"] == [] and b["feed"] == FEED for b in bodies)
    by_partition = asyncio.run(_read_partitions(topics.bootstrap, EVENTS_TOPIC))
    # one multi-event message per partition per request (at most 3 requests x 2 partitions)
    assert sum(len(msgs) for msgs in by_partition.values()) <= 6
    seen: dict[str, list[int]] = {}
    for part, messages in by_partition.items():
        for message in messages:
            for ev in orjson.loads(message):
                sub = normalise_subscriber(ev["subscriber_id"])
                assert partition_for(sub, 2) == part
                assert ev["feed"] == FEED and ev["note"] == "kept"
                seen.setdefault(sub, []).append(ev["ts"])
    assert sum(len(v) for v in seen.values()) == 60 and len(seen) == 10
    assert all(ts == sorted(ts) for ts in seen.values())  # per-subscriber order kept


REJECTS = {  # kind -> an invalid record
    "malformed": b'{"event_id": "m1", "subscriber_id": ',
    "too_large": orjson.dumps(_event(101, pad="x" * 70_000)),
    "not_an_object": b"42",
    "missing_field": orjson.dumps({k: v for k, v in _event(102).items() if k != "ts"}),
    "unknown_type": orjson.dumps(_event(103, type="teleport")),
    "subscriber_id": orjson.dumps(_event(104, sub="12")),
    "ts": orjson.dumps(_event(105, ts=5)),
    "invalid_value": orjson.dumps(_event(106, type="spend", amount=-3)),
}


def test_every_rejection_reason_is_reported_and_dead_lettered(
        topics: EmbeddedBroker, tmp_path: Path) -> None:
    lines: list[bytes] = []
    for n, bad in enumerate(REJECTS.values()):
        lines += [orjson.dumps(_event(n)), bad]

    async def main() -> tuple[dict, dict, list[int], str]:
        async with _client(_settings(topics, tmp_path)) as client:
            mixed = await (await client.post("/v1/events", data=b"\n".join(lines),
                                             headers=NDJSON)).json()
            broken = await (await client.post("/v1/events", data=b'[{"event_id": 1}, oops]',
                                              headers=JSON)).json()
            empty = await client.post("/v1/events", data=b"  \n", headers=JSON)
            text = await client.post("/v1/events", data=b"{}",
                                     headers={**AUTH, "Content-Type": "text/plain"})
            metrics = await (await client.get("/metrics")).text()
            return mixed, broken, [empty.status, text.status], metrics

    mixed, broken, statuses, metrics = asyncio.run(main())
    assert mixed["accepted"] == len(REJECTS)
    assert [r["index"] for r in mixed["rejected"]] == list(range(1, 2 * len(REJECTS), 2))
    assert [r["kind"] for r in mixed["rejected"]] == list(REJECTS)
    assert broken["accepted"] == 0
    assert [(r["index"], r["kind"]) for r in broken["rejected"]] == [(0, "malformed")]
    assert statuses == [400, 415]
    for kind in REJECTS:
        assert f'churnwatch_ingest_events_rejected_total{{feed="{FEED}",kind="{kind}"}} ' \
               f'{2.0 if kind == "malformed" else 1.0}' in metrics
    assert f'churnwatch_ingest_events_accepted_total{{feed="{FEED}"}} 8.0' in metrics

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(topics.bootstrap, DLQ_TOPIC))]
    assert len(letters) == len(REJECTS) + 1
    for letter in letters:
        assert letter["topic"] == f"http:{FEED}" and letter["kind"] == "invalid"
        assert letter["partition"] == -1 and letter["offset"] == -1
    by_index = {letter["index"]: letter for letter in letters
                if letter["payload"] != '[{"event_id": 1}, oops]'}
    for item in mixed["rejected"]:
        assert by_index[item["index"]]["reason"] == item["reason"]
        assert by_index[item["index"]]["payload"].encode()[:100] == lines[item["index"]][:100]


def test_401_and_token_rotation_without_restart(topics: EmbeddedBroker, tmp_path: Path) -> None:
    path = _tokens(tmp_path / "tokens.toml", {TOKEN: FEED})
    body = orjson.dumps(_event(1))

    async def post(client: TestClient, headers: dict) -> tuple[int, dict]:
        r = await client.post("/v1/events", data=body,
                              headers={"Content-Type": "application/json", **headers})
        return r.status, await r.json()

    async def main() -> None:
        async with _client(_settings(topics, tmp_path, ingest_tokens_file=path)) as client:
            assert (await post(client, {}))[0] == 401
            assert (await post(client, {"Authorization": "Bearer wrong"}))[0] == 401
            assert (await post(client, {"Authorization": f"Basic {TOKEN}"}))[0] == 401
            status, out = await post(client, AUTH)
            assert status == 200 and out["feed"] == FEED
            # rotate: a new token for the feed, the old one removed, another feed added
            _tokens(path, {"rotated-token": FEED, "care-token": "care-tickets"})
            assert (await post(client, AUTH))[0] == 401
            assert (await post(client, {"Authorization": "Bearer rotated-token"}))[1]["feed"] \
                == FEED
            assert (await post(client, {"Authorization": "Bearer care-token"}))[1]["feed"] \
                == "care-tickets"
            path.write_text("[tokens\n")  # a half-written file keeps the previous tokens
            assert (await post(client, {"Authorization": "Bearer care-token"}))[0] == 200
            status, out = await post(client, {"Authorization": "Bearer care-token"})
            assert status == 200

    asyncio.run(main())
    json_path = tmp_path / "tokens.json"
    json_path.write_text('{"tokens": {"j-token": "json-feed"}}')
    assert TokenStore(json_path).feed_for("Bearer j-token") == "json-feed"
    assert TokenStore(json_path).feed_for("Bearer j-toke") is None


def test_413_body_size_and_event_count(topics: EmbeddedBroker, tmp_path: Path) -> None:
    settings = _settings(topics, tmp_path, ingest_max_body_bytes=4096, ingest_max_events=5)

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 1000
        yield orjson.dumps(_event(1))

    async def main() -> list[tuple[int, dict]]:
        async with _client(settings) as client:
            out = []
            for data in (orjson.dumps([_event(i, pad="x" * 1000) for i in range(5)]), chunks(),
                         orjson.dumps([_event(i) for i in range(6)])):
                r = await client.post("/v1/events", data=data, headers=JSON)
                out.append((r.status, await r.json()))
            r = await client.post("/v1/events", data=orjson.dumps([_event(i) for i in range(5)]),
                                  headers=JSON)
            out.append((r.status, await r.json()))
            return out

    (s1, b1), (s2, b2), (s3, b3), (s4, b4) = asyncio.run(main())
    assert (s1, b1["error"]) == (413, "body_too_large") and "4096 bytes" in b1["reason"]
    assert (s2, b2["error"]) == (413, "body_too_large")
    assert (s3, b3["error"]) == (413, "too_many_events") and "6 events" in b3["reason"]
    assert (s4, b4["accepted"]) == (200, 5)
    assert len(asyncio.run(read_topic(topics.bootstrap, EVENTS_TOPIC))) == 1  # only the last


def test_429_with_retry_after_per_feed(topics: EmbeddedBroker, tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens.toml", {TOKEN: FEED, "other": "other-feed"})
    settings = _settings(topics, tmp_path, ingest_tokens_file=tokens)
    limiter = FeedRateLimiter(10, 10)  # 10 events per 1 s window, in this process

    async def main() -> None:
        async with _client(settings, limiter=limiter) as client:
            ten = orjson.dumps([_event(i) for i in range(10)])
            assert (await client.post("/v1/events", data=ten, headers=JSON)).status == 200
            r = await client.post("/v1/events", data=orjson.dumps([_event(i) for i in range(5)]),
                                  headers=JSON)
            assert r.status == 429 and r.headers["Retry-After"] == "1"
            assert (await r.json())["error"] == "rate_limited"
            other = {"Authorization": "Bearer other", "Content-Type": "application/json"}
            assert (await client.post("/v1/events", data=ten, headers=other)).status == 200
            await asyncio.sleep(2.05)  # two windows later the budget is whole again
            r = await client.post("/v1/events", data=orjson.dumps([_event(i) for i in range(30)]),
                                  headers=JSON)  # more than the burst: charged the burst
            assert r.status == 200
            r = await client.post("/v1/events", data=orjson.dumps([_event(i) for i in range(1)]),
                                  headers=JSON)
            assert r.status == 429 and r.headers["Retry-After"] == "1"

    asyncio.run(main())


class BlockingProducer:
    """A producer whose acknowledgements wait until released (or fail)."""

    partitions = 2

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.fail: Exception | None = None
        self.produced: list = []

    async def produce(self, messages) -> None:
        await self.release.wait()
        if self.fail:
            raise self.fail
        self.produced += messages


def test_503_when_in_flight_limit_is_full_or_broker_does_not_ack(
        topics: EmbeddedBroker, tmp_path: Path) -> None:
    settings = _settings(topics, tmp_path, ingest_max_in_flight=1, ingest_produce_timeout_s=0.3)
    body = orjson.dumps([_event(i) for i in range(3)])

    async def main() -> None:
        producer = BlockingProducer()
        async with _client(settings, producer=producer) as client:
            first = asyncio.ensure_future(client.post("/v1/events", data=body, headers=JSON))
            await asyncio.sleep(0.1)
            busy = await client.post("/v1/events", data=body, headers=JSON)
            assert busy.status == 503 and busy.headers["Retry-After"] == "1"
            assert (await busy.json())["error"] == "overloaded"
            # the blocked request is never acknowledged in time: 503, nothing claimed
            timed_out = await first
            assert timed_out.status == 503
            assert (await timed_out.json())["error"] == "broker_unavailable"
            producer.release.set()
            ok = await client.post("/v1/events", data=body, headers=JSON)
            assert ok.status == 200 and (await ok.json())["accepted"] == 3
            producer.fail = RuntimeError("broker gone")
            failed = await client.post("/v1/events", data=body, headers=JSON)
            assert failed.status == 503 and failed.headers["Retry-After"] == "1"
            text = await (await client.get("/metrics")).text()
            assert 'churnwatch_ingest_requests_total{status="503"} 3.0' in text
            assert 'churnwatch_ingest_in_flight_requests 0.0' in text

    asyncio.run(main())


def test_send_retries_429_honouring_retry_after(topics: EmbeddedBroker, tmp_path: Path) -> None:
    settings = _settings(topics, tmp_path, ingest_rate_per_feed=40, ingest_rate_burst=40)
    lines = [orjson.dumps(_event(i)) for i in range(100)] + [b"", b"not json"]

    async def main():
        async with _client(settings) as client:
            return await send_stream(lines, str(client.make_url("/")), TOKEN, batch=25)

    started = time.monotonic()
    report = asyncio.run(main())
    assert (report.events, report.accepted, report.rejected) == (101, 100, 1)
    assert report.rejections == [{"line": 102, "reason": report.rejections[0]["reason"]}]
    assert report.retries >= 2 and time.monotonic() - started >= 1.0
    assert len(asyncio.run(read_topic(topics.bootstrap, EVENTS_TOPIC))) >= 4








