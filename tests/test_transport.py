"""The worker's Kafka consumer uses the configured fetch wait, not Faust's fixed 1,500 ms."""

from __future__ import annotations

import asyncio

import pytest

from churnwatch.infra.config import Settings
from churnwatch.worker import create_app


def _worker_consumer(settings: Settings):
    async def build():
        app = create_app(settings)
        thread = app.consumer._thread
        return thread._create_worker_consumer(app.transport)
    return asyncio.run(build())


@pytest.mark.integration
def test_fetch_wait_is_the_configured_one(redis_url: str) -> None:
    base = dict(broker="kafka://127.0.0.1:1", redis_url=redis_url, web_enabled=False)
    assert _worker_consumer(Settings(**base, fetch_max_wait_ms=40))._fetch_max_wait_ms == 40
    assert _worker_consumer(Settings(**base))._fetch_max_wait_ms == 25
