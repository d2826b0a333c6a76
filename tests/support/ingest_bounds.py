"""Helpers of the ingest-bounds tests: a controllable clock and event bodies."""

from __future__ import annotations

import time

import orjson


class Instant:
    """A producer that acknowledges at once and keeps what it was given."""

    partitions = 2

    def __init__(self) -> None:
        self.messages: list = []

    async def produce(self, messages) -> None:
        self.messages += messages


def _events(n: int, tag: str) -> bytes:
    ts = int(time.time() * 1000) - 86_400_000
    return orjson.dumps([{"event_id": f"{tag}{i}", "subscriber_id": "+447700900001",
                          "type": "login", "ts": ts + i} for i in range(n)])
