"""The per-feed ingest rate limit is fleet-wide (streams/ingest_ratelimit.py): two ingest app
instances on one real redis-server share one budget per feed; without Redis (or when it is
down) each process limits on its own."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from churnwatch.dev.embedded import free_port
from churnwatch.infra.config import Settings
from streams.ingest import create_ingest_app
from streams.ingest_auth import TokenStore
from streams.ingest_http import runner_options
from tests.support.ingest_bounds import Instant, _events

pytestmark = pytest.mark.integration

HEADERS = {"Authorization": "Bearer rate-token-01", "Content-Type": "application/json"}
OTHER = {"Authorization": "Bearer rate-token-02", "Content-Type": "application/json"}


async def _replicas(tmp: Path, redis_url: str, n: int = 2) -> list[TestClient]:
    path = tmp / "tokens.toml"
    path.write_text('[tokens]\n"rate-token-01" = "metered"\n"rate-token-02" = "other"\n')
    settings = Settings(ingest_tokens_file=path, ingest_rate_per_feed=20, ingest_rate_burst=20,
                        redis_url=redis_url)
    clients = []
    for _ in range(n):
        server = TestServer(create_ingest_app(settings, Instant(), TokenStore(path)))
        await server.start_server(**runner_options())
        clients.append(TestClient(server))
        await clients[-1].start_server()
    return clients


async def _statuses(clients: list[TestClient], rounds: int, headers: dict) -> list[int]:
    out = []
    for i in range(rounds):
        r = await clients[i % len(clients)].post("/v1/events", data=_events(5, f"r{i}-"),
                                                 headers=headers)
        out.append(r.status)
    return out


def test_two_replicas_share_one_budget_per_feed(tmp_path: Path, redis_url: str) -> None:
    async def main() -> tuple[list[int], list[int]]:
        clients = await _replicas(tmp_path, redis_url)
        try:
            # 6 requests of 5 events alternating over the replicas: 20 pass, fleet-wide
            metered = await _statuses(clients, 6, HEADERS)
            other = await _statuses(clients, 4, OTHER)  # another feed has its own budget
            return metered, other
        finally:
            for client in clients:
                await client.close()

    metered, other = asyncio.run(main())
    assert metered == [200, 200, 200, 200, 429, 429]
    assert other == [200] * 4


def test_without_redis_each_process_limits_on_its_own(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def main() -> list[int]:
        clients = await _replicas(tmp_path, down, n=1)
        try:
            return await _statuses(clients, 6, HEADERS)
        finally:
            await clients[0].close()

    with caplog.at_level(logging.WARNING, logger="churnwatch.ingest"):
        statuses = asyncio.run(main())
    assert statuses == [200, 200, 200, 200, 429, 429]
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
