"""The pipeline's Redis writes besides the ledger's commit: the expiry of idle and churned
subscribers, a silence sweep's snapshot-record updates, and storm-held alerts. Described
as writes (``churnwatch.infra.redis.writes``) for the batch commit to send."""

from __future__ import annotations

from importlib import resources

from alerting.decide import Decision
from churnwatch.infra.redis.writes import Command, ScriptCalls, Write
from features.silence import SilenceIndex
from features.store import FeatureStore
from online_models.labels import SweepWrite


class SideWrites:
    """Describes these writes (the cached copies of the subscribers written are forgotten
    by the caller)."""

    def __init__(self, store: FeatureStore, silence: SilenceIndex) -> None:
        self.store = store
        self.silence = silence
        self.tails = store.redis.register_script(
            resources.files("online_models").joinpath("tail.lua").read_text())

    def expire_churned(self, subscribers: list[str]) -> list[Command]:
        """(After their writes) churned subscribers leave the silence index, so no sweep
        will remove them; their state and risk history expire after the state TTL instead."""
        keys, ttl = self.store.config.keys, self.store.config.ttl_s
        return [Command("EXPIRE", key, ttl) for sid in subscribers
                for key in (keys.state(sid), keys.risk(sid), keys.legacy_risk(sid))]

    def expire(self, partition: int, subscribers: list[str]) -> list[Command]:
        """The removal of subscribers idle for longer than the state TTL (in event time)."""
        keys = self.store.config.keys
        return [Command("DEL", keys.state(sid), keys.ledger(sid), keys.risk(sid),
                        keys.legacy_risk(sid), keys.alerts(sid)) for sid in subscribers
                ] + self.silence.forget(partition, subscribers)

    async def tails_written(self, writes: list[SweepWrite]) -> list[Write]:
        """The sweep's snapshot-record updates (compare-and-set on each value's tail)."""
        if not writes:
            return []
        keys = self.store.config.keys
        names = [keys.state(w.subscriber_id) for w in writes]
        router = self.store.router  # one call on a single Redis, one per node on a cluster
        calls = tuple((node, [names[i] for i in group],
                       [part for i in group for part in (writes[i].old, writes[i].new)])
                      for node, group in await router.split(names))
        return [ScriptCalls(router, self.tails, calls)]

    def hold(self, decision: Decision) -> list[Command]:
        """The storm-held alerts (for an operator to release or discard)."""
        keys = self.store.config.keys
        return [Command("RPUSH", keys.held(rule), payload) for rule, payload in decision.held]
