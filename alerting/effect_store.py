"""The incrementality ledger in Redis (``alerting.effect`` says what it measures).

A batch's decided alerts are registered (their cells, ``alerting.effect.alert_cells``) and
its ``churn`` and ``active`` events decide the open alerts of their subscribers, by one
script (``effect.lua``) whose keys share the ``{effect}`` slot. Both are described as writes
for the batch commit (``streams.commit.BatchCommit``), so they land with the batch's states,
once: a replayed batch is recognised as applied and writes nothing again. Alerts whose
window closed are counted by the next batch's write (event time: the highest event time
seen, less the window and a grace for late churn events), as retained unless a churn event
in the window decided otherwise.

:meth:`EffectLedger.refresh` reads the counts back (at most every ``every_s``) into the
snapshot the allocator decides on, and the ``churnwatch_effect_*`` gauges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import msgspec
import orjson
from prometheus_client import CollectorRegistry, Gauge

from alerting.alert import Alert
from alerting.allocate import EffectSnapshot
from alerting.effect import alert_cells, by_action_segment, parse_counts, rows
from alerting.effect_config import EffectConfig
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import ScriptCalls, Write

log = logging.getLogger("churnwatch.effect")
_packer = msgspec.msgpack.Encoder()
_NAMES = ("open", "alerts", "bysub", "counts", "done", "clock")


class EffectLedger:
    """Describes the ledger's writes and keeps the last snapshot of its counts."""

    def __init__(self, redis: Any, keys: Keys = Keys(), config: EffectConfig = EffectConfig(),
                 registry: CollectorRegistry | None = None, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.every_s = every_s
        self.clock = clock
        self.router = ScriptRouter(redis)
        self.snapshot = EffectSnapshot()
        self._keys = [keys.effect(name) for name in _NAMES]
        self._script = redis.register_script(
            resources.files("alerting").joinpath("effect.lua").read_text())
        self._read_at: float | None = None
        self._flagged: set[tuple[str, str]] = set()
        registry = registry or CollectorRegistry()
        cell = ["action", "segment", "reason"]
        self._outcomes = Gauge("churnwatch_effect_outcomes", "Settled alerts by arm (treated, "
                               "control) and cell", ["arm", *cell], registry=registry)
        self._retained = Gauge("churnwatch_effect_retained_ratio", "Retained share of the "
                               "settled alerts by arm and cell", ["arm", *cell], registry=registry)
        self._difference = Gauge("churnwatch_effect_difference", "Incremental retention "
                                 "(treated − control retained share) with its 95 % interval",
                                 [*cell, "bound"], registry=registry)
        self._contacts = Gauge("churnwatch_effect_contacts", "Treated alerts registered by "
                               "cell", cell, registry=registry)
        self._cost = Gauge("churnwatch_effect_offer_cost", "Cost of the contacts by cell",
                           cell, registry=registry)
        self._value = Gauge("churnwatch_effect_retained_value", "Incremental retained "
                            "subscribers × their value, by cell", cell, registry=registry)
        self._backfiring = Gauge("churnwatch_effect_backfiring", "1 where an action's interval "
                                 "of incremental retention is below zero in a segment (its "
                                 "alerts there no longer get it)", ["action", "segment"],
                                 registry=registry)

    async def _calls(self, args: list[Any]) -> list[Write]:
        node = (await self.router.split(self._keys[:1]))[0][0]
        return [ScriptCalls(self.router, self._script, ((node, self._keys, args),))]

    def batch_writes(self, alerts: Sequence[Alert], payloads: Sequence[bytes],
                     applied: Sequence[Event]) -> Callable[[], Awaitable[list[Write]]]:
        """A batch's writes, described for each commit attempt: its alerts (as decided,
        before replayed ones join them) registered, its churn and renewal events observed."""
        alerts, payloads, applied = list(alerts), list(payloads), list(applied)

        async def describe() -> list[Write]:
            return [*await self.register(alerts, payloads), *await self.observe(applied)]

        return describe

    async def register(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> list[Write]:
        """The registration of the alerts that acted (or would have, but for the holdout)."""
        items = []
        for alert, payload in zip(alerts, payloads):
            if not alert.segment:
                continue
            _, cells = alert_cells(orjson.loads(payload))
            if cells:
                items.append((alert.alert_id, alert.subscriber_id, alert.ts, cells))
        return await self._calls(["register", _packer.encode(items)]) if items else []

    async def observe(self, events: Sequence[Event]) -> list[Write]:
        """The open alerts decided by ``churn`` and ``active`` events, and the counting of
        those whose window the events' time closed."""
        if not events:
            return []
        found = [(ev.subscriber_id, ev.type, ev.ts) for ev in events
                 if ev.type in ("churn", "active")]
        window = int(self.config.window_days * DAY_MS)
        grace = int(self.config.grace_days * DAY_MS)
        return await self._calls(["observe", _packer.encode(found),
                                  max(ev.ts for ev in events), window, grace])

    async def counts(self) -> dict[str, int]:
        return parse_counts(await self.redis.hgetall(self.keys.effect("counts")))

    async def refresh(self, force: bool = False) -> EffectSnapshot:
        """Read the counts (if ``every_s`` passed since the last read) into the snapshot and
        the gauges; flags newly backfiring (action, segment) cells in the log."""
        now = self.clock()
        if not force and self._read_at is not None and now - self._read_at < self.every_s:
            return self.snapshot
        self._read_at = now
        counts = await self.counts()
        economics = self.config.economics
        self.snapshot = EffectSnapshot.of(by_action_segment(counts, economics),
                                          self.config.min_control)
        for row in rows(counts, economics, ("s",)):
            labels = (row.action, row.segment, row.x)
            self._contacts.labels(*labels).set(row.contacts)
            self._cost.labels(*labels).set(row.offer_cost)
            for arm, n, k in (("treated", row.treated, row.treated_retained),
                              ("control", row.control, row.control_retained)):
                self._outcomes.labels(arm, *labels).set(n)
                if n:
                    self._retained.labels(arm, *labels).set(k / n)
            if row.difference is not None:
                for bound, v in (("estimate", row.difference), ("low", row.low),
                                 ("high", row.high)):
                    self._difference.labels(*labels, bound).set(v)
                self._value.labels(*labels).set(row.retained_value or 0.0)
        for (action, segment), row in self.snapshot.cells.items():
            bad = self.snapshot.backfiring(action, segment) is not None
            self._backfiring.labels(action, segment).set(int(bad))
            if bad and (action, segment) not in self._flagged:
                self._flagged.add((action, segment))
                log.warning("sleeping dogs: %s backfires in segment %s (incremental retention "
                            "%+.3f, 95 %% interval [%+.3f, %+.3f], %d treated / %d control)%s",
                            action, segment, row.difference, row.low, row.high, row.treated,
                            row.control, "; suppressed there" if self.config.suppress_backfiring
                            else "; not suppressed (suppress_backfiring = false)")
        return self.snapshot
