"""Security: every server we start listens on 127.0.0.1 only and the worker serves nothing but
/metrics (Faust's web and table endpoints are off); the running ingest process refuses
requests without or with a wrong token; the worker works through a Redis ACL user with a
password; Kafka SSL/SASL settings reach Faust and aiokafka; and no phone number or secret
shows up in logs, DLQ reasons, metrics or error messages."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis

from churnwatch.core.errors import ConfigError
from churnwatch.dev.embedded import EmbeddedRedis, free_port
from churnwatch.infra.config import DLQ_TOPIC, EVENTS_TOPIC
from churnwatch.infra.settings_load import load_settings
from tests.support.history import WEBHOOK_SECRET, HookReceiver
from tests.support.stream_feed import Feed
from tests.support.worker import Worker, read_topic

REDIS_PASSWORD = "rEd1s-pa55w0rd-7f3c9a"
INGEST_TOKEN = "ingest-t0ken-5b8e1d"
KAFKA_PASSWORD = "kafka-pa55-c0ffee"
PHONES = ["+447700900301", "+447700900302", "+447700900303"]


# ------------------------------------------------------------------ listening sockets
def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on (from /proc, IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A = LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            if width == 8:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            out.add((addr, int(hex_port, 16)))
    return out


def _http(url: str, body: bytes | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_servers_bind_loopback_only_and_ingest_needs_its_token(worker: Worker, redis_server,
                                                               tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[tokens]\n"{INGEST_TOKEN}" = "billing"\n')
    port = free_port()
    ingest = subprocess.Popen([sys.executable, "-m", "churnwatch", "ingest"],
                              env={**worker.env, "CHURNWATCH_INGEST_TOKENS_FILE": str(tokens),
                                   "CHURNWATCH_INGEST_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        worker.start()
        worker.wait_for(lambda: worker.metric("churnwatch_ruleset_info") is not None,
                        what="the worker")
        url = f"http://127.0.0.1:{port}/v1/events"
        deadline = time.monotonic() + 60
        while _http(url, b"{}", {"Content-Type": "application/json"}) != 401:
            assert ingest.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
        event = orjson.dumps({"event_id": "s1", "subscriber_id": PHONES[0], "type": "login",
                              "ts": 1_778_000_000_000})
        json_ = {"Content-Type": "application/json"}
        assert _http(url, event, json_) == 401
        assert _http(url, event, {**json_, "Authorization": "Bearer wrong"}) == 401
        assert _http(url, event, {**json_, "Authorization": f"Bearer {INGEST_TOKEN}x"}) == 401
        assert _http(url, event, {**json_, "Authorization": INGEST_TOKEN}) == 401
        assert _http(url, event, {**json_, "Authorization": f"Bearer {INGEST_TOKEN}"}) == 200

        assert worker.proc is not None and worker.broker.pid and redis_server.pid
        sockets = {"broker": listening(worker.broker.pid), "redis": listening(redis_server.pid),
                   "worker": listening(worker.proc.pid), "ingest": listening(ingest.pid)}
        for name, bound in sockets.items():
            assert bound, name
            assert {addr for addr, _ in bound} == {"127.0.0.1"}, (name, bound)
        own = {worker.metrics_port, getattr(worker, "web_port", worker.metrics_port)}
        assert {p for _, p in sockets["worker"]} <= own  # no Faust web/table server (6066)
        assert ("127.0.0.1", worker.metrics_port) in sockets["worker"]
        assert sockets["ingest"] == {("127.0.0.1", port)}
        assert _http(f"http://127.0.0.1:{worker.metrics_port}/metrics") == 200
    finally:
        ingest.terminate()
        out, _ = ingest.communicate(timeout=30)
    assert INGEST_TOKEN.encode() not in out  # tokens are never logged


# ------------------------------------------------------------------ Kafka security settings
def test_kafka_sasl_ssl_settings_reach_faust_and_aiokafka(tmp_path: Path) -> None:
    from churnwatch.infra.kafka.auth import broker_credentials, client_options

    settings = load_settings(broker="kafka://k.example:9093", kafka_security_protocol="SASL_SSL",
                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_username="churn",
                             kafka_password=KAFKA_PASSWORD)
    creds = broker_credentials(settings)
    options = client_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL",
                                                                         "SCRAM-SHA-512")
    assert options["sasl_plain_username"] == "churn"
    assert options["sasl_plain_password"] == KAFKA_PASSWORD
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    assert KAFKA_PASSWORD not in repr(creds) + repr(settings) + str(settings.model_dump())
    plain = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="u",
                          kafka_password=KAFKA_PASSWORD)
    assert client_options(plain)["security_protocol"] == "SASL_PLAINTEXT"
    assert client_options(load_settings())["security_protocol"] == "PLAINTEXT"
    assert client_options(load_settings(kafka_security_protocol="SSL"))["ssl_context"]

    import faust

    from churnwatch.worker import create_app  # noqa: F401 - Faust receives the same credentials

    app = faust.App("sec-test", broker="kafka://k.example:9093", broker_credentials=creds)
    assert app.conf.broker_credentials is creds

    for bad, key in ((dict(kafka_security_protocol="SASL_SSL"), "kafka_username"),
                     (dict(kafka_username="u", kafka_password=KAFKA_PASSWORD), "only used"),
                     (dict(kafka_ssl_cafile=tmp_path / "ca.pem"), "only used"),
                     (dict(kafka_security_protocol="TLS"), "kafka-security-protocol")):
        with pytest.raises(ConfigError) as info:
            load_settings(**bad)
        assert key in str(info.value) and KAFKA_PASSWORD not in str(info.value)


@pytest.mark.integration
def test_kafka_sasl_against_a_broker_without_it_fails_without_leaking(worker: Worker) -> None:
    """What can be exercised on Tansu: SASL settings reach the client (the handshake is
    attempted and refused) and the password appears nowhere in the output."""
    worker.env.update(CHURNWATCH_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                      CHURNWATCH_KAFKA_USERNAME="churn", CHURNWATCH_KAFKA_PASSWORD=KAFKA_PASSWORD)
    out = subprocess.run([sys.executable, "-m", "churnwatch", "worker"], env=worker.env,
                         capture_output=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert KAFKA_PASSWORD.encode() not in text
    assert re.search(rb"(?i)sasl|authentication|UnsupportedSaslMechanism|IllegalSasl", text)


# ------------------------------------------------------------------ Redis ACL + output scan
@pytest.mark.integration
def test_redis_acl_user_and_no_phone_numbers_or_secrets_in_any_output(worker: Worker,
                                                                      tmp_path: Path) -> None:
    receiver = HookReceiver()
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "churn", "on", f">{REDIS_PASSWORD}", "~*", "&*",
                              "+@all", "-@dangerous", "+info")
        admin.config_set("requirepass", "an0ther-admin-secret")  # the default user needs auth
        admin = redis.Redis.from_url(server.url, password="an0ther-admin-secret")
        url = f"redis://churn:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"

        wrong = dict(worker.env, CHURNWATCH_REDIS_URL=url.replace(REDIS_PASSWORD, "nope"))
        refused = subprocess.run([sys.executable, "-m", "churnwatch", "inspect", PHONES[0]],
                                 env=wrong, capture_output=True, timeout=120)
        assert refused.returncode != 0 and b"nope" not in refused.stdout + refused.stderr

        worker.env.update(CHURNWATCH_REDIS_URL=url, CHURNWATCH_WEBHOOK_URL=receiver.url,
                          CHURNWATCH_WEBHOOK_SECRET=WEBHOOK_SECRET, CHURNWATCH_WORK_QUEUES="true")
        feed = Feed()
        for phone in PHONES:
            feed.logins(phone, 20, 1)
            feed.complaints(phone, 2)
        lines = feed.write(tmp_path / "feed.ndjson").read_bytes().splitlines()
        lines += [orjson.dumps({"event_id": f"bad-{i}", "subscriber_id": p, "type": "login",
                                "ts": bad}) for i, (p, bad) in enumerate(
            [(PHONES[0], 0), (PHONES[1] + "99999999", 1_778_000_000_000),
             (PHONES[2], "yesterday"), (PHONES[0], 1_778_000_000_000 * 10)])]
        path = tmp_path / "all.ndjson"
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            worker.start()
            assert worker.cli("replay", str(path)).returncode == 0
            worker.wait_caught_up()
            worker.wait_for(lambda: len(set(receiver.deliveries)) == len(PHONES), timeout=60,
                            what="the alerts")
            admin.config_set("maxmemory", "1")  # errors (and their messages) while OOM
            more = Feed()
            more.add(PHONES[1], "login", 1_778_500_000_000, channel="app")
            assert worker.cli("replay", str(more.write(tmp_path / "m.ndjson"))).returncode == 0
            worker.wait_for(lambda: (worker.metric("churnwatch_redis_errors_total") or 0) >= 1,
                            what="a Redis error")
            admin.config_set("maxmemory", "0")
            worker.wait_caught_up()
            metrics = urllib.request.urlopen(
                f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10).read()
        finally:
            admin.config_set("maxmemory", "0")
            worker.stop()
            receiver.close()
        cli = [worker.cli("inspect", PHONES[0], "--json"), worker.cli("inspect", "+1 2")]
        assert cli[0].returncode == 0 and PHONES[0].encode() in cli[0].stdout  # works via ACL

    letters = [orjson.loads(m) for m in asyncio.run(read_topic(worker.broker.bootstrap,
                                                                DLQ_TOPIC))]
    assert len(letters) >= 4
    outputs = {
        "worker log": worker.log_path.read_bytes(),
        "DLQ reasons": "\n".join(d["reason"] for d in letters).encode(),
        "metrics": metrics,
        "CLI errors": cli[1].stdout + cli[1].stderr,
    }
    secrets = [REDIS_PASSWORD, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"),
               "an0ther-admin-secret", getattr(worker, "web_token", REDIS_PASSWORD)]
    digits = re.compile(rb"(?<![0-9])(?:\+|00)?(?:44)?7700\s?900\s?3\d\d")
    for name, text in outputs.items():
        for secret in secrets:
            assert secret.encode() not in text, (name, "a secret")
        assert not digits.search(text), (name, digits.search(text))
    assert EVENTS_TOPIC  # (the events themselves carry the numbers; outputs must not)
