"""Network faults between the worker and Redis, and between the worker and the broker, through
a TCP proxy (tests/support/tcp_proxy.py): delay, dropped connections, a blackhole, an unreachable
Redis (``CHAOS_OUTAGE_S`` seconds, default 5; RELIABILITY.md's full run uses 30) and a Redis
out of memory. Events wait, nothing is acknowledged without its feature write (a worker
killed during the outage loses nothing), and the worker recovers by itself once the fault
ends; the whole history then matches the oracle."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest
import redis

from churnwatch.dev.embedded import EmbeddedBroker, free_port
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import PARTITIONS, feed, group_of, produce, wait_serving
from tests.support.history import (
    WEBHOOK_SECRET,
    HookReceiver,
    check_history,
    oracle,
    partition_lag,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_S", "5"))


def _topics(bootstrap: str) -> None:
    asyncio.run(create_topics(bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))


def _chunks(lines: list[bytes], n: int) -> list[list[bytes]]:
    size = -(-len(lines) // n)
    return [lines[i:i + size] for i in range(0, len(lines), size)]


def _lagging(bootstrap: str, group: str) -> bool:
    return sum(asyncio.run(partition_lag(bootstrap, group)).values()) > 0


def test_redis_delay_drop_blackhole_outage_and_oom(broker, redis_server, redis_url,
                                                  tmp_path: Path) -> None:
    _topics(broker.bootstrap)
    lines = feed(subscribers=40, days=45, seed=21)
    expected = oracle(lines)
    chunks = _chunks(lines, 5)
    receiver = HookReceiver()
    direct = redis.Redis.from_url(redis_url)
    with TcpProxy(redis_server.port) as proxy:
        [worker] = group_of(1, broker, f"redis://127.0.0.1:{proxy.port}/0", tmp_path,
                            CHURNWATCH_REDIS_TIMEOUT_S="2", CHURNWATCH_WEBHOOK_URL=receiver.url,
                            CHURNWATCH_WEBHOOK_SECRET=WEBHOOK_SECRET)
        try:
            worker.start()
            wait_serving(worker)
            proxy.delay = 0.05  # a slow link: every Redis reply 50 ms late
            produce(broker.bootstrap, chunks[0], PARTITIONS)
            time.sleep(2)
            proxy.drop()  # connections reset mid-batch
            produce(broker.bootstrap, chunks[1], PARTITIONS)
            time.sleep(1)
            proxy.drop()
            proxy.heal()

            proxy.blackhole = True  # silence: replies never come, the socket timeout fires
            produce(broker.bootstrap, chunks[2], PARTITIONS)
            time.sleep(3)
            assert _lagging(broker.bootstrap, worker.app_id)  # events wait
            proxy.heal()
            worker.wait_caught_up(timeout=120)

            proxy.refuse = True  # unreachable
            proxy.drop()
            produce(broker.bootstrap, chunks[3], PARTITIONS)
            time.sleep(OUTAGE_S)
            assert _lagging(broker.bootstrap, worker.app_id)
            assert worker.proc is not None and worker.proc.poll() is None  # waits, alive
            worker.proc.send_signal(signal.SIGKILL)  # nothing was acked without its write
            worker.proc.wait()
            proxy.heal()
            worker.start()
            worker.wait_caught_up(timeout=120)

            direct.config_set("maxmemory", "1")  # out of memory: every write refused
            produce(broker.bootstrap, chunks[4], PARTITIONS)
            time.sleep(4)
            assert _lagging(broker.bootstrap, worker.app_id)
            direct.config_set("maxmemory", "0")
            worker.wait_caught_up(timeout=120)
            errors = worker.metric("churnwatch_redis_errors_total")
            assert errors is not None and errors >= 1
        finally:
            direct.config_set("maxmemory", "0")
            worker.stop()
            receiver.close()
    log = worker.log_path.read_text()
    assert "redis unavailable" in log
    check_history(broker.bootstrap, redis_url, worker.app_id, expected, receiver)


class ProxiedBroker(EmbeddedBroker):
    """The embedded broker advertising the proxy's address, so every client (the worker's
    and the test's) talks to it through the proxy."""

    def __init__(self, port: int, proxy_port: int) -> None:
        super().__init__(port)
        self.proxy_port = proxy_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.proxy_port}"

    def _argv(self) -> list[str]:
        argv = super()._argv()
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{self.proxy_port}"
        return argv

    def _ready(self) -> bool:
        req = struct.pack(">hhih", 3, 0, 1, 10) + b"churnwatch" + struct.pack(">i", 0)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(struct.pack(">i", len(req)) + req)
                return len(sock.recv(64)) > 8
        except OSError:
            return False


def test_broker_delay_drop_and_blackhole(redis_url, tmp_path: Path) -> None:
    port = free_port()
    with TcpProxy(port) as proxy, ProxiedBroker(port, proxy.port) as broker:
        _topics(broker.bootstrap)
        lines = feed(subscribers=40, days=45, seed=22)
        expected = oracle(lines)
        chunks = _chunks(lines, 3)
        receiver = HookReceiver()
        workers = group_of(2, broker, redis_url, tmp_path, CHURNWATCH_WEBHOOK_URL=receiver.url,
                           CHURNWATCH_WEBHOOK_SECRET=WEBHOOK_SECRET)
        try:
            for w in workers:
                w.start()
            for w in workers:
                wait_serving(w)
            produce(broker.bootstrap, chunks[0], PARTITIONS)
            proxy.delay = 0.1
            time.sleep(2)
            proxy.drop()
            proxy.heal()
            produce(broker.bootstrap, chunks[1], PARTITIONS)
            time.sleep(1)
            proxy.blackhole = True  # longer than the session timeout: members are evicted
            time.sleep(5)
            proxy.heal()
            produce(broker.bootstrap, chunks[2], PARTITIONS)
            for w in workers:
                w.wait_caught_up(timeout=180)
            assert all(w.proc is not None and w.proc.poll() is None for w in workers)
        finally:
            for w in workers:
                w.stop()
            receiver.close()
        check_history(broker.bootstrap, redis_url, workers[0].app_id, expected, receiver)
