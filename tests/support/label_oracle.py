"""A plain recomputation of the delayed labels from the raw event list, and a harness that runs
the real pipeline (Redis, no Kafka) over the same events in batches.

The oracle takes each applied event's features from ``features.reference`` (which recomputes
them from the raw events) and applies the labelling rules of ``online_models.snapshots``
directly on plain lists: no record codec, no Redis, no batches, no restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from alerting.alert import Alert
from alerting.holdout import Holdout
from alerting.ledger import AlertLedger
from alerting.playbook import load_playbook
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.runtime.metrics import Metrics
from features.reference import ReferenceStore
from features.schema import FEATURES
from features.store import FeatureStore, StoreConfig
from online_models.model import SNAPSHOT_FEATURES, ChurnModel
from online_models.snapshots import Example, LabelPolicy
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset
from streams.pipeline import Pipeline
from streams.records import Record

RULES = compile_ruleset(load_ruleset())


def _code(value: float) -> int:
    """One feature value's one-byte code: exact in [-16, 63], log steps beyond."""
    if value >= 63.5:
        return min(127, 64 + round(6 * math.log2(value / 64)))
    if value <= -16.5:
        return max(-32, -16 - round(4 * math.log2(-value / 16)))
    return round(value)


def quantised(row: Any) -> list[int | None]:
    """The stored form of a feature row, computed independently of the production code."""
    out: list[int | None] = []
    for name in SNAPSHOT_FEATURES:
        value = float(row[FEATURES.index(name)])
        out.append(None if math.isnan(value) else _code(value))
    return out


def reference_labels(events: Sequence[Event], policy: LabelPolicy,
                     alerted: Mapping[tuple[str, str], bool]) -> dict[str, tuple]:
    """Example id → (snapshot ts, churned, stored values, profile attributes when the snapshot
    was taken) for the events in stream order.

    ``alerted`` maps (subscriber, event id) of alerts that acted (False) or were held out
    (True); held-out alerts change nothing here. A label with ``policy.max_labels``
    learned labels (which labelled a snapshot) of its subscriber less than a horizon away is
    not learned: the snapshots it labels are removed without an example."""
    store = ReferenceStore(policy.lateness_ms)
    clock: dict[str, int] = {}
    pending: dict[str, list[list]] = {}  # [ts, values, attrs]
    until: dict[str, int] = {}
    learned: dict[str, list[int]] = {}  # every label learned, by subscriber
    out: dict[str, tuple] = {}
    for ev in events:
        status, row = store.apply(ev)
        if status != "A":
            continue
        sid = ev.subscriber_id
        # learnable: the profile gave a tenure, or the store has watched it long enough
        known = not math.isnan(row[FEATURES.index("tenure_months")])
        watched = row[FEATURES.index("history_days")] * DAY_MS >= policy.history_ms
        now = clock[sid] = max(clock.get(sid, 0), ev.ts)
        snaps = pending.setdefault(sid, [])
        for snap in [s for s in snaps if s[0] + policy.horizon_ms < now - policy.lateness_ms]:
            out[f"{sid}/{snap[0]}"] = (snap[0], False, *snap[1:])
            snaps.remove(snap)
        sink: dict[str, tuple] = {}  # a label beyond the cap: its examples go nowhere
        if ev.type in ("churn", "active"):
            near = [t for t in learned.get(sid, []) if abs(t - ev.ts) < policy.horizon_ms]
            if len(near) < policy.max_labels:
                sink = out
                if any(s[0] <= ev.ts for s in snaps):  # a label labelling nothing: not counted
                    learned.setdefault(sid, []).append(ev.ts)
        if ev.type == "churn":
            for ts, values, attrs in snaps:
                if ts <= ev.ts:
                    sink[f"{sid}/{ts}"] = (ts, ts >= ev.ts - policy.horizon_ms, values, attrs)
            snaps.clear()
        elif ev.type == "active":
            for snap in [s for s in snaps if s[0] <= ev.ts]:
                sink[f"{sid}/{snap[0]}"] = (snap[0], False, *snap[1:])
                snaps.remove(snap)
        elif (known or watched) and now >= until.get(sid, 0):
            if not snaps or snaps[-1][0] // policy.every_ms != now // policy.every_ms:
                # the period's first scored row, with the attributes it was scored with
                snaps.append([now, quantised(row), dict(store.attrs(sid))])
        if alerted.get((sid, ev.event_id)) is False:
            snaps.clear()
            until[sid] = max(until.get(sid, 0), now + policy.exclusion_ms)
    return out


class Collector:
    """A publisher that keeps what the pipeline sends."""

    wants_scores = False

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def dead_letters(self, payloads: list[bytes]) -> None:
        pass

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        self.sent += alerts

    async def scores(self, payloads: list[bytes]) -> None:
        pass

    def marks(self) -> dict[tuple[str, str], bool]:
        return {(a.subscriber_id, a.event_id): a.holdout for a in self.sent
                if a.holdout or a.actions}


@dataclass
class Harness:
    """The real pipeline over one Redis, rebuilt on demand (a worker restart)."""

    url: str
    policy: LabelPolicy = LabelPolicy(history_ms=0)  # snapshots from the first event
    holdout: float = 0.0
    model: ChurnModel = field(default_factory=ChurnModel)
    publisher: Collector = field(default_factory=Collector)
    client: Any = None
    pipeline: Pipeline | None = None
    offset: int = 0

    async def start(self) -> Pipeline:
        await self.stop()
        self.client = aioredis.Redis.from_url(self.url)
        store = FeatureStore(self.client, StoreConfig(lateness_ms=self.policy.lateness_ms))
        self.pipeline = Pipeline(store, AlertLedger(self.client), RULES, self.model,
                                 load_playbook(), Metrics(), labels=self.policy,
                                 holdout=Holdout(self.holdout))
        return self.pipeline

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def run(self, batch: Sequence[Event]) -> None:
        if self.pipeline is None:
            await self.start()
        assert self.pipeline is not None
        records = []
        for ev in batch:
            records.append(Record("churn.events", 0, self.offset, msgspec.json.encode(ev)))
            self.offset += 1
        await self.pipeline.run(records, self.publisher)


async def stream_examples(client: Any, keys: Keys = Keys()) -> list[Example]:
    """Every example appended to the stream, in order (repeats included)."""
    decoder = msgspec.msgpack.Decoder(list[Example])
    entries = await client.xrange(keys.model("examples"))
    return [ex for _, fields in entries for ex in decoder.decode(fields[b"x"])]
