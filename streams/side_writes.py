"""The pipeline's Redis writes besides the ledger's commit: the expiry of idle and churned
subscribers, a silence sweep's snapshot-record updates, and storm-held alerts."""

from __future__ import annotations

from importlib import resources
from typing import Any

from alerting.decide import Decision
from churnwatch.infra.runtime.metrics import Metrics
from features.silence import SilenceIndex
from features.store import FeatureStore
from online_models.labels import SweepWrite


class SideWrites:
    """Queues or runs these writes over the store's Redis client (the cached copies of the
    subscribers written are forgotten by the caller, or here when run here)."""

    def __init__(self, store: FeatureStore, silence: SilenceIndex, metrics: Metrics) -> None:
        self.store = store
        self.silence = silence
        self.metrics = metrics
        self.tails = store.redis.register_script(
            resources.files("online_models").joinpath("tail.lua").read_text())

    def expire_churned(self, pipe: Any, subscribers: list[str]) -> None:
        """Queue (after their writes): churned subscribers leave the silence index, so no sweep
        will remove them; their state and risk history expire after the state TTL instead."""
        keys, ttl = self.store.config.keys, self.store.config.ttl_s
        for sid in subscribers:
            pipe.expire(keys.state(sid), ttl)
            pipe.expire(keys.risk(sid), ttl)

    def expire(self, pipe: Any, partition: int, subscribers: list[str]) -> None:
        """Queue the removal of subscribers idle for longer than the state TTL (in event
        time); the caller forgets their cached copies once it ran."""
        keys = self.store.config.keys
        for sid in subscribers:
            pipe.delete(keys.state(sid), keys.ledger(sid), keys.risk(sid), keys.alerts(sid))
        self.silence.forget(pipe, partition, subscribers)

    async def write_tails(self, pipe: Any, writes: list[SweepWrite]) -> None:
        """Queue the sweep's snapshot-record updates (compare-and-set on each value's tail)."""
        if writes:
            keys = self.store.config.keys
            names = [keys.state(w.subscriber_id) for w in writes]
            router = self.store.router  # one call on a single Redis, one per node on a cluster
            calls = [(node, [names[i] for i in group],
                      [part for i in group for part in (writes[i].old, writes[i].new)])
                     for node, group in await router.split(names)]
            # queued on the pipeline (single Redis): redis-py loads the script if Redis lacks it
            await router.run(self.tails, calls, pipe=pipe)

    def hold(self, pipe: Any, decision: Decision) -> None:
        """Queue the storm-held alerts (for an operator to release or discard)."""
        keys = self.store.config.keys
        for rule, payload in decision.held:
            pipe.rpush(keys.held(rule), payload)
