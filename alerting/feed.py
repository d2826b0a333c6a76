"""The global feed of delivered alerts: a Redis Stream every worker appends to and the
retention team's page reads, newest first.

The stream is capped with an approximate ``MAXLEN`` (Redis trims whole nodes, cheaply), so it
holds at least the last ``maxlen`` alerts. A batch replayed after a crash may append an alert
twice; readers drop repeated ``alert_id``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from alerting.alert import Alert
from alerting.sinks.base import SinkReport
from churnwatch.core.keys import Keys


class AlertFeed:
    """Appends delivered alerts to ``Keys.feed()`` and reads them back filtered (an
    :class:`~alerting.sinks.AlertSink` that shows alerts and delivers no action)."""

    name = "feed"
    waits_out_redis = True

    def __init__(self, redis: Any, keys: Keys = Keys(), maxlen: int = 10_000) -> None:
        self.redis = redis
        self.key = keys.feed()
        self.maxlen = maxlen

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        await self.add(payloads)
        return SinkReport()

    async def add(self, payloads: Sequence[bytes]) -> None:
        """Append alert JSON payloads, in one round trip."""
        if not payloads:
            return
        pipe = self.redis.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.key, {"a": payload}, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def latest(self, limit: int = 100, team: str | None = None,
                     severity: str | None = None, scan: int = 2000) -> list[dict[str, Any]]:
        """Up to ``limit`` alerts, newest first, among the last ``scan`` of the feed; with
        ``team``, only alerts with an action for that team; with ``severity``, only that one."""
        entries = await self.redis.xrevrange(self.key, count=scan)
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _, fields in entries:
            alert = orjson.loads(fields[b"a"])
            if alert["alert_id"] in seen:
                continue
            seen.add(alert["alert_id"])
            if severity and alert["severity"] != severity:
                continue
            if team and not any(a["team"] == team for a in alert["actions"]):
                continue
            out.append(alert)
            if len(out) >= limit:
                break
        return out
