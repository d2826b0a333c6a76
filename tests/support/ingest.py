"""Helpers of the HTTP ingest tests: settings and tokens, an in-process ingest app client,
an ingest process, and the topics fixture."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from churnwatch.dev.embedded import EmbeddedBroker, free_port
from churnwatch.infra.config import DLQ_TOPIC, EVENTS_TOPIC, Settings
from churnwatch.infra.kafka.topics import create_topics
from streams.ingest import KafkaIngestProducer, create_ingest_app
from streams.ingest_auth import TokenStore
from streams.ingest_http import runner_options
from tests.support.stream_feed import NOW

TOKEN, FEED = "s3cr3t-billing", "billing-export"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


JSON = {**AUTH, "Content-Type": "application/json"}


TS = NOW - 86_400_000


def _tokens(path: Path, tokens: dict[str, str]) -> Path:
    path.write_text("[tokens]\n" + "".join(f'"{t}" = "{f}"\n' for t, f in tokens.items()))
    return path


def _settings(broker: EmbeddedBroker, tmp: Path, **kw: object) -> Settings:
    tokens = kw.pop("ingest_tokens_file", None) or _tokens(tmp / "tokens.toml", {TOKEN: FEED})
    return Settings(broker=broker.url, partitions=2, ingest_tokens_file=tokens, **kw)


@asynccontextmanager
async def _client(settings: Settings, producer=None, limiter=None) -> AsyncIterator[TestClient]:
    own = producer is None
    if own:
        producer = KafkaIngestProducer(settings.bootstrap, settings.partitions)
        await producer.start()
    app = create_ingest_app(settings, producer, TokenStore(settings.ingest_tokens_file),
                            limiter=limiter)
    server = TestServer(app)
    try:
        await server.start_server(**runner_options())  # TestServer(**kw) would drop them
        async with TestClient(server) as client:
            yield client
    finally:
        if own:
            await producer.stop()


def _start_ingest(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "ingest", "--port", str(port)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(log.read_text())


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def topics(broker: EmbeddedBroker) -> EmbeddedBroker:
    asyncio.run(create_topics(broker.bootstrap, {EVENTS_TOPIC: 2, DLQ_TOPIC: 2}))
    return broker
