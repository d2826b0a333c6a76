"""One Kafka client configuration for every client: the security options reach every aiokafka
client churnwatch builds (unit test), topic names carry ``topic_prefix``, ``create_topics =
false`` creates nothing and fails naming what is missing, and the worker and ``replay`` run
over TLS through a TLS terminator (stunnel) in front of the embedded broker.

Tansu speaks plaintext only; it is started with its advertised listener set to stunnel's port,
so every client, after bootstrapping, connects through stunnel (TLS) too.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from churnwatch.core.errors import ConfigError
from churnwatch.dev.embedded import EmbeddedBroker, free_port
from churnwatch.infra.settings_load import load_settings
from tests.support.stream_feed import Feed
from tests.support.worker import Worker

KAFKA_PASSWORD = "kafka-pa55-c0ffee"
SECURITY_KEYS = ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                 "sasl_plain_password")


class _Recorded(Exception):
    """Raised by the patched client constructor once the options are recorded."""


def test_every_kafka_client_gets_identical_security_options(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Every aiokafka client (each builds an ``AIOKafkaClient``) gets the same security options:
    topic creation, replay's producer, the broker guard, the lag and topic-size readers, the
    group check, and the worker's own Faust producer."""
    import aiokafka.client
    import faust

    from churnwatch.infra.kafka.auth import broker_credentials, client_options
    from churnwatch.infra.kafka.broker_guard import BrokerGuard
    from churnwatch.infra.kafka.offsets import group_lag, group_members, topic_size
    from churnwatch.infra.kafka.produce import EventProducer
    from churnwatch.infra.kafka.topics import ensure_topics

    settings = load_settings(broker="kafka://k.example:9093", kafka_security_protocol="SASL_SSL",
                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_username="churn",
                             kafka_password=KAFKA_PASSWORD)
    seen: dict[str, dict[str, Any]] = {}
    current = ""

    def record(self: Any, **kwargs: Any) -> None:
        seen[current] = kwargs
        raise _Recorded

    monkeypatch.setattr(aiokafka.client.AIOKafkaClient, "__init__", record)
    options = client_options(settings)

    async def producer() -> None:
        async with EventProducer(settings.bootstrap, "t", 1, client_options=options):
            pass

    clients = {
        "create_topics": lambda: ensure_topics(settings),
        "replay producer": producer,
        "broker guard": lambda: BrokerGuard(None, settings.bootstrap, "g", "t", "k",
                                            options).observe(),
        "group_lag": lambda: group_lag(settings.bootstrap, "g", "t", options),
        "topic_size": lambda: topic_size(settings.bootstrap, "t", options),
        "group_members": lambda: group_members(settings.bootstrap, "g", options),
    }
    for name, make in clients.items():
        current = name
        with pytest.raises(_Recorded):
            asyncio.run(make())

    async def faust_producer() -> None:  # the worker's Faust app, as churnwatch/worker.py builds it
        app = faust.App("sec", broker=settings.broker,
                        broker_credentials=broker_credentials(settings))
        app.producer._new_producer()

    current = "faust producer"
    with pytest.raises(_Recorded):
        asyncio.run(faust_producer())

    assert set(seen) == {*clients, "faust producer"}
    expected = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "churn", "sasl_plain_password": KAFKA_PASSWORD}
    for name, kwargs in seen.items():
        assert {k: kwargs[k] for k in SECURITY_KEYS} == expected, name
        assert kwargs["ssl_context"].verify_mode.name == "CERT_REQUIRED", name


def test_topic_names_carry_the_prefix_and_bad_values_are_refused() -> None:
    from churnwatch.infra.kafka.topics import TopicNames

    names = TopicNames.of(load_settings(topic_prefix="staging.", app_id="cw-staging"))
    assert names.all() == ("staging.churn.events", "staging.churn.alerts", "staging.churn.scores",
                           "staging.churn.dlq", "staging.cw-staging.churn.events.home")
    assert TopicNames.of(load_settings()).events == "churn.events"
    for bad, key in ((dict(topic_prefix="a b"), "--topic-prefix"),
                     (dict(topic_replication_factor=0), "--topic-replication-factor")):
        with pytest.raises(ConfigError, match=key):
            load_settings(**bad)


@pytest.mark.integration
def test_never_create_topics(worker: Worker, tmp_path: Path) -> None:
    """With create_topics false, replay creates nothing and says which topics are missing;
    with the topics there (created by a run that may), it runs; a prefix keeps names apart."""
    feed = tmp_path / "feed.ndjson"
    feed.write_bytes(orjson.dumps({"event_id": "e1", "subscriber_id": "+447700900001",
                                   "type": "login", "ts": 1_767_225_600_000}) + b"\n")
    env = dict(CHURNWATCH_TOPIC_PREFIX="other.", CHURNWATCH_CREATE_TOPICS="false")
    worker.env.update(env)
    out = worker.cli("replay", str(feed))
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0 and "other.churn.events" in text and "CREATE_TOPICS" in text
    assert "Traceback" not in text
    from churnwatch.infra.kafka.offsets import topic_size
    from churnwatch.infra.kafka.topics import create_topics

    assert asyncio.run(topic_size(worker.broker.bootstrap, "other.churn.events")) == 0

    worker.env["CHURNWATCH_CREATE_TOPICS"] = "true"
    created = worker.cli("replay", str(feed), "--json")
    assert created.returncode == 0, created.stderr.decode()
    assert orjson.loads(created.stdout) == {"sent": 1, "topic": "other.churn.events"}
    worker.env["CHURNWATCH_CREATE_TOPICS"] = "false"
    again = worker.cli("replay", str(feed), "--json")
    assert again.returncode == 0, again.stderr.decode()
    asyncio.run(create_topics(worker.broker.bootstrap, {"other.churn.events": 2}, create=False))
    assert asyncio.run(topic_size(worker.broker.bootstrap, "other.churn.events")) == 2
    assert asyncio.run(topic_size(worker.broker.bootstrap, "churn.events")) == 0


# ------------------------------------------------------------------ TLS through stunnel
def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, int, Path]]:
    """(the broker, its TLS port, the CA file): Tansu on a plaintext port advertising the TLS
    port, and stunnel terminating TLS on that port with a certificate for 127.0.0.1."""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        pytest.fail("stunnel is not installed: apt-get install stunnel4 (see .ci/run)")
    cert, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls_port = free_port()
    conf = tmp_path / "stunnel.conf"
    with EmbeddedBroker(advertised_port=tls_port) as broker:
        conf.write_text(f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\n"
                        f"connect = 127.0.0.1:{broker.port}\ncert = {cert}\nkey = {key}\n")
        proxy = subprocess.Popen([stunnel, str(conf)], stdout=subprocess.DEVNULL,
                                 stderr=(tmp_path / "stunnel.log").open("wb"))
        try:
            _wait_port(tls_port)
            yield broker, tls_port, cert
        finally:
            proxy.terminate()
            proxy.wait(10)


@pytest.mark.integration
def test_worker_and_replay_over_tls(tls_broker: tuple[EmbeddedBroker, int, Path],
                                    redis_url: str, tmp_path: Path) -> None:
    from churnwatch.infra.kafka.auth import client_options
    from churnwatch.infra.kafka.offsets import topic_size, worker_lag

    broker, tls_port, ca = tls_broker
    worker = Worker(broker, redis_url, tmp_path)
    worker.env.update(CHURNWATCH_BROKER=f"kafka://127.0.0.1:{tls_port}",
                      CHURNWATCH_KAFKA_SECURITY_PROTOCOL="SSL",
                      CHURNWATCH_KAFKA_SSL_CAFILE=str(ca), CHURNWATCH_TOPIC_PREFIX="tls.")
    settings = load_settings(broker=f"kafka://127.0.0.1:{tls_port}",
                             kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    options = client_options(settings)
    feed = Feed()
    phones = ["+447700900401", "+447700900402"]
    for phone in phones:
        feed.logins(phone, 20, 1)
        feed.complaints(phone, 2)
    path = feed.write(tmp_path / "feed.ndjson")
    try:
        worker.start()
        out = worker.cli("replay", str(path), "--json")
        assert out.returncode == 0, out.stderr.decode()
        assert orjson.loads(out.stdout) == {"sent": len(feed.events), "topic": "tls.churn.events"}
        worker.wait_for(lambda: asyncio.run(worker_lag(settings.bootstrap, worker.app_id,
                                                       options, "tls.")) == 0
                        and len(worker.scores()) >= len(feed.events), timeout=90,
                        what="every event scored over TLS")
        worker.wait_for(lambda: {a["subscriber_id"] for a in worker.alerts()} == set(phones),
                        what="the alerts")
        # the alerts went to the prefixed topic, through TLS
        assert asyncio.run(topic_size(settings.bootstrap, "tls.churn.alerts", options)) >= 2
        assert asyncio.run(topic_size(settings.bootstrap, "churn.alerts", options)) == 0
    finally:
        worker.stop()


def test_ingest_and_send_over_tls_to_the_prefixed_topics(
        tls_broker: tuple[EmbeddedBroker, int, Path], tmp_path: Path) -> None:
    """`churnwatch ingest` takes the shared client options and topic names: over TLS, it
    creates and writes the prefixed topics, and `churnwatch send` posts to it."""
    import os

    from churnwatch.infra.kafka.auth import client_options
    from churnwatch.infra.kafka.offsets import topic_size
    from tests.support.ingest import _start_ingest, _stop

    broker, tls_port, ca = tls_broker
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[tokens]\n"ingest-token-0123456" = "crm"\n')
    env = dict(os.environ, CHURNWATCH_BROKER=f"kafka://127.0.0.1:{tls_port}",
               CHURNWATCH_KAFKA_SECURITY_PROTOCOL="SSL", CHURNWATCH_KAFKA_SSL_CAFILE=str(ca),
               CHURNWATCH_TOPIC_PREFIX="tlsin.", CHURNWATCH_INGEST_TOKENS_FILE=str(tokens))
    settings = load_settings(broker=f"kafka://127.0.0.1:{tls_port}",
                             kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    options = client_options(settings)
    feed = tmp_path / "events.ndjson"
    feed.write_bytes(b"".join(orjson.dumps({"event_id": f"e{i}", "subscriber_id": "+447700900501",
                                            "type": "login", "ts": 1_767_225_600_000 + i}) + b"\n"
                              for i in range(5)))
    proc, url = _start_ingest(env, tmp_path / "ingest.log")
    try:
        out = subprocess.run([sys.executable, "-m", "churnwatch", "send", str(feed), "--url", url,
                              "--token", "ingest-token-0123456", "--json"],
                             env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, (out.stdout + out.stderr).decode()
        assert orjson.loads(out.stdout)["accepted"] == 5
    finally:
        _stop(proc)
    assert asyncio.run(topic_size(settings.bootstrap, "tlsin.churn.events", options)) >= 1
    assert asyncio.run(topic_size(settings.bootstrap, "churn.events", options)) == 0
