"""A record batch the Kafka client cannot decode (its compressed payload is corrupt, as a
broken producer or disk can leave it) is dead-lettered once per record, with its
coordinates and the reason, and the worker keeps going: the events before and after it, in
the same partition and in others, give the oracle's history."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import orjson
import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import PARTITIONS, group_of, wait_serving
from tests.support.history import check_history, oracle
from tests.support.producers import produce_events
from tests.support.worker import read_topic

LZ4 = 3  # the codec bits of a record batch's attributes


def corrupt_batch(values: list[bytes], codec: int = LZ4) -> bytes:
    """A v2 record batch that claims ``codec`` but holds plain bytes, with a valid CRC: the
    broker stores it, a consumer fails to decompress it."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    buf = bytearray(builder.build())
    attributes = struct.unpack_from(">h", buf, 21)[0]
    struct.pack_into(">h", buf, 21, (attributes & ~0x07) | codec)
    struct.pack_into(">I", buf, 17, calc_crc32c(bytes(buf[21:])))
    return bytes(buf)


async def produce_raw(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Write ``batch`` as it is; returns its base offset."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(topic)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        response = await client.send(leader, ProduceRequest(
            required_acks=-1, timeout=10_000, topics=[(topic, [(partition, batch)])],
            transactional_id=None))
        [(_, [(_, error, offset, *_)])] = response.topics
        assert error == 0, f"the broker refused the batch: error {error}"
        return offset
    finally:
        await client.close()


def test_a_batch_that_cannot_be_decoded_is_read_as_one_marker_per_offset() -> None:
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords

    from streams import undecodable

    undecodable.install()
    undecodable.install()  # idempotent
    assert fetcher.MemoryRecords is undecodable._Records
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=None, key=None, value=b'{"ok": 1}', headers=[])
    good = bytes(builder.build())
    bad = corrupt_batch([b'{"lost": 1}', b'{"lost": 2}', b'{"lost": 3}'])
    bad = struct.pack(">q", 5) + bad[8:]  # base offset 5 (outside the CRC)
    records = fetcher.MemoryRecords(good + bad)
    first = records.next_batch()
    assert [r.value for r in first] == [b'{"ok": 1}']
    second = records.next_batch()
    markers = list(second)
    assert [m.offset for m in markers] == [5, 6, 7]
    assert all(m.value is None for m in markers)
    assert all("DecompressionError" in undecodable.reason_of(m.headers) for m in markers)
    assert records.next_batch() is None
    assert undecodable.reason_of([("other", b"x")]) is None
    # aiokafka's own record set raises on the same bytes
    plain = MemoryRecords(bad)
    with pytest.raises(Exception, match="(?i)decompress|lz4"):
        list(plain.next_batch())


@pytest.mark.integration
def test_an_undecodable_batch_is_dead_lettered_and_the_worker_goes_on(
        broker, redis_url, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    sim = Simulation(SimConfig(subscribers=40, days=45, churn_rate=0.5, seed=5))
    lines = [orjson.dumps(e) for e in sim.events()]
    expected = oracle(lines)
    half = len(lines) // 2
    [worker] = group_of(1, broker, redis_url, tmp_path)
    try:
        worker.start()
        wait_serving(worker)
        produce_events(broker.bootstrap, EVENTS_TOPIC, lines[:half], compression="lz4")
        bad = [asyncio.run(produce_raw(broker.bootstrap, EVENTS_TOPIC, p,
                                       corrupt_batch([b'{"lost": 1}', b'{"lost": 2}'])))
               for p in (0, 2)]
        produce_events(broker.bootstrap, EVENTS_TOPIC, lines[half:], compression="lz4")
        worker.wait_caught_up(timeout=180)
    finally:
        worker.stop()
    letters = [orjson.loads(m) for m in asyncio.run(read_topic(broker.bootstrap, DLQ_TOPIC))]
    undecodable = sorted((d["partition"], d["offset"]) for d in letters
                         if d["kind"] == "undecodable")
    assert undecodable == [(0, bad[0]), (0, bad[0] + 1), (2, bad[1]), (2, bad[1] + 1)]
    assert all("DecompressionError" in d["reason"] for d in letters
               if d["kind"] == "undecodable")
    history = check_history(broker.bootstrap, redis_url, worker.app_id, expected)
    assert history.lost == 0
