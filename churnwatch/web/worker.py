"""The web server's dependencies inside a worker: reads go through the worker's own pipeline
(the ruleset and model it runs), outcome events go out through its producer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from alerting.effect import report as effect_report
from alerting.feed import AlertFeed
from churnwatch.infra.config import Settings
from churnwatch.infra.kafka.produce import partition_for
from churnwatch.inspect import describe
from churnwatch.web.api import ApiDeps


def worker_deps(settings: Settings, redis: Any, pipeline: Any,
                send_event: Callable[[str, bytes], Awaitable[None]]) -> ApiDeps:
    """ApiDeps over a ``streams.pipeline.Pipeline`` and the worker's Redis client."""
    keys = pipeline.store.config.keys

    async def report(sid: str) -> dict[str, Any]:
        found = await pipeline.store.read([sid])
        alerts = [orjson.loads(a) for a in await pipeline.ledger.recent_alerts(sid)]
        return describe(sid, found.get(sid), alerts, pipeline.rules, pipeline.model)

    async def event_time(sid: str) -> int | None:
        partition = partition_for(sid, settings.partitions)
        watermark = await redis.zscore(keys.watermarks(), str(partition))
        return None if watermark is None else int(watermark)

    async def effect(by: str) -> dict[str, Any]:
        config = pipeline.playbook.effect
        return effect_report(await pipeline.effects.counts(), config.economics, by,
                             config.window_days)

    teams = tuple(sorted({entry.action.team for entry in pipeline.playbook.entries}))
    return ApiDeps(redis=redis, feed=AlertFeed(redis, keys, settings.web_feed_maxlen),
                   risk=pipeline.risk, describe=report, send_event=send_event,
                   event_time=event_time, teams=teams, keys=keys, effect=effect)
