"""Feature-store throughput and memory: the batch path against the naive per-event design.

    python -m benchmarks.bench_features [--subscribers 10000,100000,1000000] [--events N]
                                        [--batch 2000] [--quick]

For each population size the benchmark starts its own redis-server (``EmbeddedRedis``: AOF on,
``appendfsync everysec``, RDB off), then

1. *preloads* every subscriber with a realistic history (~85 events over 40 days: a profile,
   daily usage, ~1 app login a day, a few payments a month, rare complaints and plan changes)
   through the batch path itself (``FeatureStore.stage`` + ``AlertLedger.commit``), in big
   batches that carry whole histories, two batches in flight. If the population would not fit
   the time budget (``--budget-s``, default 8 minutes per population), the history of the
   subscribers not yet loaded is thinned to what fits: it keeps the events that shape the
   stored state (the profile, every event of the last 7 days, whose ids stay in the dedup set,
   one event per active day) and drops the others; the report says so;
2. measures Redis memory per subscriber (``INFO memory`` used_memory delta / subscribers and
   a ``MEMORY USAGE`` sample of state keys);
3. measures, interleaved round by round in the same run, (a) the batch path on a live stream
   (uniformly random subscribers; event time advances at the history's rate per subscriber,
   so a small population's stream covers more days): ``FeatureStore.stage`` and
   ``AlertLedger.commit(subscribers, {}, {})`` (plus the staged state blobs, for a store that
   returns them), one round trip each per batch; (b) :class:`NaivePerEventStore`, the
   "naive design" (docs/benchmarks.md): one pipelined Redis round trip per event;
4. splits the batch path's time (redis-server time in scripts per stage / commit call, the
   client side, and a cProfile of the client side; extra passes, not timed).

Targets: >= 150,000 events/s for feature updates, <= 1 KB Redis memory per subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import math
import os
import pstats
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import redis.asyncio as aioredis

import features.store as features_store
from alerting.ledger import AlertLedger
from benchmarks import report
from churnwatch.core.events import COMPLAINT_CATEGORIES, Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.infra.redis.connect import hiredis_packing
from churnwatch.infra.runtime import gc_tuning
from features.cache import StateCache
from features.commits import CommitChain
from features.schema import month_of, to_cents, to_milli
from features.store import APPLIED, FeatureStore, encode_batch
from streams.commit import BatchCommit

CODE_PATHS = ("features", "alerting/ledger.py", "alerting/ledger.lua", "churnwatch/core/keys.py",
              "churnwatch/infra/redis/resp.py", "churnwatch/core/memcopy.py")
TARGET_EVENTS_PER_S = 150_000
TARGET_BYTES_PER_SUBSCRIBER = 1024
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EDGE_MS = 60_000
LAST_DAYS_KEPT = 7  # the store keeps event ids for the allowed lateness (7 days)
# the history's events per subscriber-day (logins ~1.05, usage 0.95, spends ~0.07, rest
# rare): the live stream's event time advances at this rate per subscriber too
EVENTS_PER_SUBSCRIBER_DAY = 2.08

# live-stream mix: mostly logins, usage and spend, some complaints
STREAM_MIX = {"login": 0.42, "usage": 0.40, "spend": 0.14, "complaint": 0.03,
              "plan_change": 0.005, "profile": 0.005}
_CAT_P = (0.35, 0.30, 0.25, 0.10)


# ---------------------------------------------------------------------------- events
def subscriber_id(n: int) -> str:
    return f"+4479{n:08d}"


class EventFactory:
    """Deterministic synthetic events (``churnwatch.core.events.Event``) with unique ids."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.next_id = 0

    def _ids(self, n: int) -> list[str]:
        start = self.next_id
        self.next_id += n
        return [f"e{x:011d}" for x in range(start, start + n)]

    def _build(self, subs: np.ndarray, kinds: np.ndarray, ts: np.ndarray) -> list[Event]:
        """Events of the given subscribers (population indices), kinds and times, in that order."""
        rng, n = self.rng, len(subs)
        amount = np.round(rng.uniform(5, 120, n), 2)
        data = np.round(rng.lognormal(5.0, 1.0, n), 1)
        voice = np.round(rng.lognormal(2.5, 0.8, n), 1)
        sms = rng.poisson(3, n).astype(float)
        cat = rng.choice(len(COMPLAINT_CATEGORIES), n, p=_CAT_P)
        fee = rng.choice([10.0, 25.0, 30.0, 60.0, 95.0], n)
        tenure = rng.integers(1, 120, n)
        out = []
        for eid, s, k, t, a, dm, vm, sm, c, f, ten in zip(
                self._ids(n), subs.tolist(), kinds.tolist(), ts.tolist(), amount.tolist(),
                data.tolist(), voice.tolist(), sms.tolist(), cat.tolist(), fee.tolist(),
                tenure.tolist()):
            sid = subscriber_id(s)
            if k == "login":
                out.append(Event(eid, sid, "login", t))
            elif k == "usage":
                out.append(Event(eid, sid, "usage", t, data_mb=dm, voice_min=vm, sms=sm))
            elif k == "spend":
                out.append(Event(eid, sid, "spend", t, amount=a))
            elif k == "complaint":
                out.append(Event(eid, sid, "complaint", t, category=COMPLAINT_CATEGORIES[c]))
            elif k == "plan_change":
                out.append(Event(eid, sid, "plan_change", t, plan="standard-lite",
                                 monthly_fee=f))
            else:
                out.append(Event(eid, sid, "profile", t, plan="standard", tenure_months=ten,
                                 attrs={"monthly_fee": f, "age": float(18 + s % 60),
                                        "devices": float(1 + s % 4),
                                        "contract_months_left": float(s % 24),
                                        "data_allowance_gb": 20.0}))
        return out

    def history(self, subs: np.ndarray, end_ms: int, days: int, keep: int | None = None
                ) -> list[Event]:
        """Each subscriber's history over the ``days`` days before ``end_ms`` (time-sorted).

        ~85 events each for 40 days. With ``keep``, each history is thinned to at most ``keep``
        events, keeping first the profile, then every event of the last 7 days, then one event
        per active day, then the rest (at random).
        """
        rng, n = self.rng, len(subs)
        start = end_ms - days * DAY_MS
        per_day = {
            "login": rng.poisson(rng.uniform(0.7, 1.4, n)[:, None], (n, days)),
            "usage": rng.random((n, days)) < 0.95,
            "spend": rng.random((n, days)) < (rng.choice([1, 2, 3, 5], n, p=[.4, .25, .25, .1])
                                              / 30)[:, None],
            "complaint": rng.random((n, days)) < 0.2 / 30,
            "plan_change": rng.random((n, days)) < 0.001,
        }
        local, day, kind = [np.arange(n)], [np.zeros(n, np.int64)], [np.full(n, "profile")]
        for name, counts in per_day.items():
            cell = np.repeat(np.arange(n * days), np.asarray(counts, np.int64).ravel())
            local.append(cell // days)
            day.append(cell % days)
            kind.append(np.full(len(cell), name))
        loc, dd, kinds = np.concatenate(local), np.concatenate(day), np.concatenate(kind)
        ts = start + dd * DAY_MS + rng.integers(EDGE_MS, DAY_MS - EDGE_MS, len(loc))
        ts[:n] = start + loc[:n] % EDGE_MS  # profile first, at the very start
        if keep is not None:
            first_of_day = np.zeros(len(loc), bool)
            _, first = np.unique(loc * days + dd, return_index=True)
            first_of_day[first] = True
            prio = np.where(kinds == "profile", 0.0,
                            np.where(dd >= days - LAST_DAYS_KEPT, 1.0,
                                     np.where(first_of_day, 2.0, 3.0)))
            order = np.lexsort((prio + rng.random(len(loc)), loc))
            ranked = loc[order]
            starts = np.searchsorted(ranked, np.arange(n))
            rank = np.arange(len(loc)) - starts[ranked]
            chosen = order[rank < keep]
            loc, kinds, ts = loc[chosen], kinds[chosen], ts[chosen]
        order = np.argsort(ts, kind="stable")
        return self._build(subs[loc[order]], kinds[order], ts[order])

    @staticmethod
    def span_ms(n: int, population: int) -> int:
        """Event time that ``n`` live events of ``population`` subscribers cover at the
        history's rate per subscriber (``EVENTS_PER_SUBSCRIBER_DAY``)."""
        return max(1, round(n / (population * EVENTS_PER_SUBSCRIBER_DAY) * DAY_MS))

    def stream(self, n: int, population: int | np.ndarray, start_ms: int, span_ms: int
               ) -> list[Event]:
        """``n`` live events of uniformly random subscribers, times advancing over the span."""
        rng = self.rng
        pool = np.arange(population) if isinstance(population, int) else population
        subs = pool[rng.integers(0, len(pool), n)]
        kinds = rng.choice(list(STREAM_MIX), n, p=list(STREAM_MIX.values()))
        ts = start_ms + np.sort(rng.integers(0, span_ms, n))
        return self._build(subs, kinds, ts)


class LiveStream:
    """Live events of a pool of subscribers, each call's event time continuing where the
    last one ended (``clock``), at the history's rate per subscriber
    (:meth:`EventFactory.span_ms`)."""

    def __init__(self, factory: EventFactory, pool: int | np.ndarray, start_ms: int) -> None:
        self.factory, self.pool, self.clock = factory, pool, start_ms
        self.size = pool if isinstance(pool, int) else len(pool)

    def __call__(self, n: int) -> list[Event]:
        span = self.factory.span_ms(n, self.size)
        events = self.factory.stream(n, self.pool, self.clock, span)
        self.clock += span
        return events


# ---------------------------------------------------------------------------- naive store
class NaivePerEventStore:
    """The "naive design" (docs/benchmarks.md): one pipelined Redis round trip per event.

    Per event, one non-transactional pipeline: ``SADD`` the event id to the subscriber's dedup
    set (+ ``EXPIRE``), ``HINCRBY`` the event's day-bucket (and month) fields of the
    subscriber's hash, ``HSET`` its clock and last-seen days (+ ``EXPIRE``), and ``HGETALL``
    the hash to read everything back; the 27 features are then computed in Python from the
    hash. It does the same kind of work per event as the batch path, plainly and with
    none of its guarantees: a duplicate is detected only after its increments were applied,
    nothing is pruned, and clocks are overwritten rather than maxed (fine for an in-order
    stream, which is all this benchmark sends).
    """

    # day-bucket fields "d:<day>:<slot>": 0 logins, 1 spends, 2 spend cents, 3-6 complaints by
    # category (network, billing, service, other), 7 data (thousandths of MB), 8 voice (milli)

    def __init__(self, redis: Any, prefix: str = "naive", dedup_ttl_s: int = 7 * 86_400,
                 ttl_s: int = 400 * 86_400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.dedup_ttl_s = dedup_ttl_s
        self.ttl_s = ttl_s
        self.round_trip_s = 0.0  # time spent awaiting Redis (for the report's split)
        self.compute_s = 0.0

    def hash_key(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:h"

    def ids_key(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:ids"

    @staticmethod
    def changes(ev: Event) -> tuple[dict[str, int], dict[str, int]]:
        """(fields to HINCRBY, fields to HSET) for one event."""
        day = ev.ts // DAY_MS
        month = month_of(ev.ts)
        incr: dict[str, int] = {}
        sets = {"mx": ev.ts, "mm": month}
        kind = ev.type
        if kind == "login":
            incr[f"d:{day}:0"] = 1
            sets["ll"] = day
        elif kind == "spend":
            cents = to_cents(ev.amount)
            incr[f"d:{day}:1"] = 1
            incr[f"d:{day}:2"] = cents
            incr[f"m:{month}"] = cents
            sets["ls"] = day
        elif kind == "complaint":
            incr[f"d:{day}:{3 + COMPLAINT_CATEGORIES.index(ev.category or 'other')}"] = 1
            sets["lc"] = day
        elif kind == "usage":
            incr[f"d:{day}:7"] = to_milli(ev.data_mb)
            incr[f"d:{day}:8"] = to_milli(ev.voice_min)
            sets["lu"] = day
        elif kind == "plan_change":
            sets["f1"] = to_cents(ev.monthly_fee or 0.0)
            sets["t1"] = ev.ts
        elif kind == "profile" and ev.tenure_months is not None:
            sets["ten"] = int(ev.tenure_months)
            sets["tm"] = month
        return incr, sets

    async def apply(self, ev: Event) -> np.ndarray | None:
        """Apply one event in one round trip; its feature row, or None for a duplicate."""
        hkey, ikey = self.hash_key(ev.subscriber_id), self.ids_key(ev.subscriber_id)
        incr, sets = self.changes(ev)
        t0 = time.perf_counter()
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(ikey, ev.event_id)
        pipe.expire(ikey, self.dedup_ttl_s)
        for name, amount in incr.items():
            pipe.hincrby(hkey, name, amount)
        pipe.hset(hkey, mapping=sets)
        self.prune(pipe, hkey, ev)
        pipe.expire(hkey, self.ttl_s)
        pipe.hgetall(hkey)
        replies = await pipe.execute()
        t1 = time.perf_counter()
        self.round_trip_s += t1 - t0
        if replies[0] == 0:
            return None
        row = self.features(replies[-1])
        self.compute_s += time.perf_counter() - t1
        return row

    def prune(self, pipe: Any, hkey: str, ev: Event) -> None:
        """Queue extra commands in the event's round trip (none here: the hash keeps growing)."""

    @staticmethod
    def features(h: dict[bytes, bytes]) -> np.ndarray:
        """The 27 features (in stored units) from the subscriber's hash, at its clock."""
        now_day = int(h[b"mx"]) // DAY_MS
        now_month = int(h[b"mm"])
        days = np.zeros((35, 9))
        months = [0.0] * 6
        for key, value in h.items():
            if key.startswith(b"d:"):
                _, d, slot = key.split(b":")
                ago = now_day - int(d)
                if 0 <= ago < 35:
                    days[ago, int(slot)] += int(value)
            elif key.startswith(b"m:"):
                ago = now_month - int(key[2:])
                if 0 <= ago < 6:
                    months[ago] = float(value)
        w7, w28, w30 = days[:7].sum(0), days[7:35].sum(0), days[:30].sum(0)

        def since(name: bytes) -> float:
            return float(now_day - int(h[name])) if name in h else math.nan

        fee = float(h[b"f1"]) if b"f1" in h else math.nan
        tenure = float(int(h[b"ten"]) + now_month - int(h[b"tm"])) if b"ten" in h else math.nan
        plan_day = float(now_day - int(h[b"t1"]) // DAY_MS) if b"t1" in h else math.nan
        return np.array(months + [
            w7[0], w28[0], w30[3:7].sum(), w30[3], w30[4], w30[5], w30[6], w30[1], w30[2],
            since(b"ls"), w7[7], w28[7], w7[8], w28[8], fee, 0.0, plan_day, tenure,
            since(b"ll"), since(b"lc"), since(b"lu")])

    async def preload(self, events: Sequence[Event], chunk: int = 500) -> None:
        """Write the state that applying ``events`` one by one would leave, in bulk."""
        hashes: dict[str, dict[str, int]] = {}
        ids: dict[str, list[str]] = {}
        for ev in events:
            h = hashes.setdefault(ev.subscriber_id, {})
            incr, sets = self.changes(ev)
            for name, amount in incr.items():
                h[name] = h.get(name, 0) + amount
            h.update(sets)
            ids.setdefault(ev.subscriber_id, []).append(ev.event_id)
        sids = list(hashes)
        for i in range(0, len(sids), chunk):
            pipe = self.redis.pipeline(transaction=False)
            for sid in sids[i:i + chunk]:
                pipe.hset(self.hash_key(sid), mapping=hashes[sid])
                pipe.expire(self.hash_key(sid), self.ttl_s)
                pipe.sadd(self.ids_key(sid), *ids[sid])
                pipe.expire(self.ids_key(sid), self.dedup_ttl_s)
            await pipe.execute()


# ---------------------------------------------------------------------------- batch path
async def commit(ledger: AlertLedger, staged: Any, caches: Sequence[FeatureStore] = ()) -> None:
    """A staged batch's states through ``BatchCommit`` (no alert decisions). Then, as the
    worker does, the stores in ``caches`` record what was stored in their state caches."""
    blobs = getattr(staged, "staged", None)
    await BatchCommit(ledger.redis, lambda: ledger.writes({}, {}, blobs),
                      cluster=ledger.router.cluster).send()
    for store in caches:
        store.remember(staged, {})


# ---------------------------------------------------------------------------- config
@dataclass
class Config:
    populations: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    events: int = 60_000           # live events per measured round (batch path)
    batch: int = 2000              # live batch size
    rounds: int = 5                # measured rounds, batch and naive interleaved
    naive_events: int = 5000       # live events per naive round
    naive_subscribers: int = 5000  # naive state is preloaded for this many subscribers
    history_days: int = 40
    preload_batch: int = 10_000    # events per preload batch (whole histories)
    preload_inflight: int = 2
    budget_s: float = 480.0        # wall-clock budget per population
    memory_sample: int = 2000
    seed: int = 7
    quick: bool = False
    out_dir: str | None = None


# ---------------------------------------------------------------------------- helpers
def _commandstats(info: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {k[len("cmdstat_"):]: v for k, v in info.items() if k.startswith("cmdstat_")}


def _stats_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    out = {}
    for cmd, stats in after.items():
        prev = before.get(cmd, {})
        calls = stats.get("calls", 0) - prev.get("calls", 0)
        usec = stats.get("usec", 0) - prev.get("usec", 0)
        if calls:
            out[cmd] = {"calls": calls, "usec": usec, "usec_per_call": usec / calls}
    return out


def _merge(total: dict, delta: dict) -> None:
    for cmd, stats in delta.items():
        t = total.setdefault(cmd, {"calls": 0, "usec": 0})
        t["calls"] += stats["calls"]
        t["usec"] += stats["usec"]
    for stats in total.values():
        stats["usec_per_call"] = stats["usec"] / stats["calls"] if stats["calls"] else 0


async def _quiesce(client: Any, timeout: float = 180.0) -> float:
    """Wait until no AOF rewrite runs (it forks and competes for the 2 cores); seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        info = await client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - t0


async def _forks(client: Any) -> int:
    """redis-server's forks so far (each AOF rewrite is one)."""
    return int((await client.info("stats")).get("total_forks", 0))


# ---------------------------------------------------------------------------- phases
class Preloader:
    """Loads the population through the batch path, thinning histories to fit the budget."""

    def __init__(self, cfg: Config, population: int, store: FeatureStore, ledger: AlertLedger,
                 factory: EventFactory, end_ms: int, budget_s: float, live_events: int,
                 naive_events: int) -> None:
        self.cfg, self.population = cfg, population
        self.store, self.ledger, self.factory = store, ledger, factory
        self.end_ms = end_ms
        self.total_budget_s = budget_s
        self.budget_s = budget_s  # for the preload itself, set after the probe
        self.live_events, self.naive_events = live_events, naive_events
        self.full_mean = 85.0  # refined from the data
        self.subs_per_batch = max(1, int(cfg.preload_batch / self.full_mean))
        self.keep: int | None = None
        self.decided = False
        self.next_sub = 0
        self.full_history_subs = 0
        self.full_done = 0
        self.thin_done = 0
        self.thin_t0 = 0.0
        self.last_replan = 0.0
        self.replans: list[dict[str, Any]] = []
        self.events_full = 0
        self.events_thinned = 0
        self.not_applied = 0
        self.gen_s = self.stage_s = self.commit_s = 0.0
        self.reserve_s = 0.0
        self.t0 = 0.0

    def _decide(self) -> None:
        """After the probe: keep full histories if the rest fits the budget, else thin them."""
        self.decided = True
        elapsed = time.perf_counter() - self.t0
        done = self.full_done  # completed (not in-flight) full-history subscribers
        mean = self.events_full / max(done, 1)
        rate = self.events_full / max(elapsed, 1e-9)
        remaining = self.population - self.next_sub
        needed = remaining * mean / rate
        # room for everything after the preload: live batches run at roughly a tenth of the
        # preload rate (one subscriber per event instead of ~85), naive at several hundred/s
        self.reserve_s = 20.0 + self.live_events / max(rate / 10, 2000.0) + self.naive_events / 600
        self.budget_s = max(self.total_budget_s - self.reserve_s, 10.0)
        left = self.budget_s - elapsed
        self.full_history_subs = self.population
        if needed > left and remaining:
            fit = rate * max(left, 0) / remaining
            self.keep = max(12, int(fit))
            self.subs_per_batch = max(1, int(self.cfg.preload_batch / self.keep))
            self.full_history_subs = self.next_sub  # a prefix of the population
            self.thin_t0 = time.perf_counter()
        self.probe = {"subscribers": done, "seconds": elapsed, "events_per_s": rate,
                      "estimated_full_seconds": elapsed + needed, "budget_s": self.budget_s,
                      "reserved_for_measurements_s": self.reserve_s}

    def _next_chunk(self) -> tuple[np.ndarray, int | None] | None:
        if self.next_sub >= self.population:
            return None
        if not self.decided:
            elapsed = time.perf_counter() - self.t0
            probe_subs = max(self.subs_per_batch * 4, self.population // 50)
            if self.next_sub >= probe_subs and elapsed >= 3.0 or self.next_sub >= self.population // 5 \
                    and elapsed >= 1.0:
                self._decide()
        elif self.keep is not None:
            self._replan()
        n = min(self.subs_per_batch, self.population - self.next_sub)
        subs = np.arange(self.next_sub, self.next_sub + n)
        self.next_sub += n
        return subs, (self.keep if self.decided else None)

    def _replan(self) -> None:
        """Thinned histories cost more per event (a fixed cost per subscriber): if the thinned
        phase runs slower than planned, thin further (never below 8 events)."""
        now = time.perf_counter()
        if self.thin_done < 20 * self.subs_per_batch or now - self.last_replan < 5.0:
            return
        self.last_replan = now
        subs_rate = self.thin_done / max(now - self.thin_t0, 1e-9)
        remaining = self.population - self.next_sub
        projected = remaining / subs_rate
        left = self.budget_s - (now - self.t0)
        if projected > 1.02 * left and self.keep > 8:
            new_keep = max(8, int(self.keep * max(left, 0) / projected))
            if new_keep < self.keep:
                self.replans.append({"at_subscriber": self.next_sub, "keep": new_keep,
                                     "projected_s": projected, "left_s": left})
                self.keep = new_keep
                self.subs_per_batch = max(1, int(self.cfg.preload_batch / self.keep))

    async def _worker(self) -> None:
        while (chunk := self._next_chunk()) is not None:
            subs, keep = chunk
            t0 = time.perf_counter()
            events = self.factory.history(subs, self.end_ms, self.cfg.history_days, keep)
            t1 = time.perf_counter()
            staged = await self.store.stage(events)
            t2 = time.perf_counter()
            await commit(self.ledger, staged, [self.store])
            self.gen_s += t1 - t0
            self.stage_s += t2 - t1
            self.commit_s += time.perf_counter() - t2
            self.not_applied += len(events) - staged.status.count(APPLIED)
            if keep is None:
                self.events_full += len(events)
                self.full_done += len(subs)
            else:
                self.thin_done += len(subs)
                self.events_thinned += len(events)

    async def run(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        await asyncio.gather(*(self._worker() for _ in range(self.cfg.preload_inflight)))
        if not self.decided:
            self._decide()
        seconds = time.perf_counter() - self.t0
        events = self.events_full + self.events_thinned
        self.full_mean = self.events_full / max(self.full_history_subs, 1)
        thinned_subs = self.population - self.full_history_subs
        return {
            "seconds": seconds,
            "events": events,
            "events_per_s": events / seconds,
            "not_applied_events": self.not_applied,
            "subscribers_per_batch_full": max(1, int(self.cfg.preload_batch / 85.0)),
            "inflight_batches": self.cfg.preload_inflight,
            "history_days": self.cfg.history_days,
            "history_events_per_subscriber_full": self.full_mean,
            "history_scaled_down": self.keep is not None,
            "history_keep_per_subscriber": self.keep,
            "history_replans": self.replans,
            "subscribers_with_full_history": self.full_history_subs,
            "subscribers_with_thinned_history": thinned_subs,
            "history_events_per_subscriber_thinned": (self.events_thinned / thinned_subs
                                                      if thinned_subs else None),
            "probe": self.probe,
            # summed over the in-flight workers (so they can exceed the wall time)
            "generate_s": self.gen_s, "stage_call_s": self.stage_s, "commit_call_s": self.commit_s,
            "thinned_subscribers_per_s": (self.thin_done / (time.perf_counter() - self.thin_t0)
                                          if self.thin_done else None),
        }


async def measure_memory(client: Any, population: int, before: dict[str, Any], cfg: Config,
                         full_history_subs: int, keys: Keys) -> dict[str, Any]:
    after = await client.info("memory")
    dbsize = await client.dbsize()
    rng = random.Random(cfg.seed)

    async def usage(subs: Sequence[int]) -> list[int]:
        pipe = client.pipeline(transaction=False)
        for s in subs:
            pipe.memory_usage(keys.state(subscriber_id(s)))
        return [x for x in await pipe.execute() if x is not None]

    sample_full = rng.sample(range(full_history_subs), min(cfg.memory_sample, full_history_subs))
    thinned = population - full_history_subs
    sample_thin = [full_history_subs + rng.randrange(thinned)
                   for _ in range(min(cfg.memory_sample, thinned))]
    sizes_full = await usage(sample_full)
    sizes_thin = await usage(sample_thin)
    strlen_pipe = client.pipeline(transaction=False)
    for s in sample_full[:500]:
        strlen_pipe.strlen(keys.state(subscriber_id(s)))
    blob = [x for x in await strlen_pipe.execute() if x]
    stage_key = getattr(keys, "stage", None)  # the former Lua store's staging keys
    stage_left = await client.exists(stage_key(subscriber_id(0))) if stage_key else 0

    def stats(sizes: list[int]) -> dict[str, Any] | None:
        if not sizes:
            return None
        arr = np.array(sizes)
        return {"n": len(sizes), "median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
                "max": int(arr.max()), "mean": float(arr.mean())}

    used = after["used_memory"] - before["used_memory"]
    dataset = after.get("used_memory_dataset", 0) - before.get("used_memory_dataset", 0)
    full, thin = stats(sizes_full), stats(sizes_thin)
    estimate = used / population
    if full and thin:  # as if every subscriber had the full history
        estimate += (full["median"] - thin["median"]) * thinned / population
    return {
        "dbsize": dbsize,
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "used_memory_delta_per_subscriber": used / population,
        "used_memory_dataset_delta_per_subscriber": dataset / population,
        "used_memory_per_subscriber_full_history_estimate": estimate,
        "memory_usage_state_key_full_history": full,
        "memory_usage_state_key_thinned_history": thin,
        "state_blob_bytes_median": float(np.median(blob)) if blob else None,
        "used_memory_lua": after.get("used_memory_lua"),  # Lua heap, not in used_memory
        "mem_allocator": after.get("mem_allocator"),
        "mem_fragmentation_ratio": after.get("mem_fragmentation_ratio"),
        "staging_keys_left": int(stage_left),
        "keys_per_subscriber": dbsize / population,
    }


async def batch_round(store: FeatureStore, ledger: AlertLedger, batches: list[list[Event]],
                      caches: Sequence[FeatureStore] = ()) -> dict[str, Any]:
    """Stage and commit each batch; ``caches`` (the cached store) record every commit, so the
    worker cache stays what Redis holds whichever store wrote."""
    stage_s = commit_s = 0.0
    store.cache.take_counts()  # count this round's lookups only
    applied = distinct = 0
    t_start = time.perf_counter()
    for events in batches:
        t0 = time.perf_counter()
        staged = await store.stage(events)
        t1 = time.perf_counter()
        await commit(ledger, staged, caches)
        t2 = time.perf_counter()
        stage_s += t1 - t0
        commit_s += t2 - t1
        applied += len(staged.rows)
        distinct += len(staged.subscribers)
    wall = time.perf_counter() - t_start
    n = sum(len(b) for b in batches)
    hits, misses = store.cache.take_counts()
    return {"events": n, "applied": applied, "seconds": wall, "stage_s": stage_s,
            "commit_s": commit_s, "distinct_subscribers_per_batch": distinct / len(batches),
            "cache_hit_rate": hits / (hits + misses) if hits + misses else None}


async def _server_cpu(client: Any) -> tuple[float, float]:
    """redis-server's CPU seconds so far: its own, and its exited children's (AOF
    rewrites)."""
    cpu = await client.info("cpu")
    return (cpu["used_cpu_user"] + cpu["used_cpu_sys"],
            cpu["used_cpu_user_children"] + cpu["used_cpu_sys_children"])


async def overlapped_round(store: FeatureStore, ledger: AlertLedger,
                           batches: list[list[Event]]) -> dict[str, Any]:
    """The cached store with each batch's commit landing while the next batch stages
    (``features.commits.CommitChain``, one commit under way at a time). Also the CPU time
    per event of this process and of redis-server (and its AOF rewrite children), which
    say which side bounds the round."""
    chain = CommitChain(store)
    stage_s = 0.0
    store.cache.take_counts()
    applied = distinct = 0
    server_before = await _server_cpu(ledger.redis)
    cpu_start = time.process_time()
    t_start = time.perf_counter()
    for events in batches:
        t0 = time.perf_counter()
        staged = await store.stage(events)
        stage_s += time.perf_counter() - t0
        await chain.submit(staged, {}, lambda staged=staged: BatchCommit(
            ledger.redis, lambda: ledger.writes({}, {}, staged.staged),
            cluster=ledger.router.cluster).send())
        applied += len(staged.rows)
        distinct += len(staged.subscribers)
    await chain.drain()
    wall = time.perf_counter() - t_start
    client_cpu = time.process_time() - cpu_start
    await _quiesce(ledger.redis)  # (untimed) a rewrite's child counts once it has exited
    server_after = await _server_cpu(ledger.redis)
    hits, misses = store.cache.take_counts()
    n = sum(len(b) for b in batches)
    return {"events": n, "applied": applied, "seconds": wall,
            "stage_s": stage_s, "distinct_subscribers_per_batch": distinct / len(batches),
            "cache_hit_rate": hits / (hits + misses) if hits + misses else None,
            "client_cpu_us_per_event": client_cpu / n * 1e6,
            "server_cpu_us_per_event": (server_after[0] - server_before[0]) / n * 1e6,
            "rewrite_cpu_us_per_event": (server_after[1] - server_before[1]) / n * 1e6}


async def naive_round(naive: NaivePerEventStore, events: list[Event]) -> dict[str, Any]:
    naive.round_trip_s = naive.compute_s = 0.0
    applied = 0
    t0 = time.perf_counter()
    for ev in events:
        if await naive.apply(ev) is not None:
            applied += 1
    wall = time.perf_counter() - t0
    return {"events": len(events), "applied": applied, "seconds": wall,
            "round_trip_s": naive.round_trip_s, "features_s": naive.compute_s}


async def _server_usec(client: Any) -> int:
    """redis-server µs in the store's and the commit's top-level commands: the scripts and
    the commit's transaction (``EXEC`` includes the ``MSET`` inside it)."""
    stats = await client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0)
               for name in ("evalsha", "eval", "exec"))


async def server_split(client: Any, store: FeatureStore, ledger: AlertLedger,
                       batches: list[list[Event]]) -> dict[str, Any]:
    """One extra pass, not timed: redis-server µs spent during each stage and each commit call
    (``INFO commandstats`` usec delta, see :func:`_server_usec`), the client-side rest of the
    stage call, Python ``encode_batch`` cost and the loopback RTT."""
    stage_us, commit_us, wall_us, subs = [], [], [], []
    for events in batches:
        u0 = await _server_usec(client)
        t0 = time.perf_counter()
        staged = await store.stage(events)
        wall_us.append((time.perf_counter() - t0) * 1e6)
        u1 = await _server_usec(client)
        await commit(ledger, staged)
        u2 = await _server_usec(client)
        stage_us.append(u1 - u0)
        commit_us.append(u2 - u1)
        subs.append(len(staged.subscribers))
    per_batch = sum(len(b) for b in batches) / len(batches)
    encode = report.time_repeats(lambda: [encode_batch(b) for b in batches], repeats=3, warmup=0)
    ping = []
    for _ in range(200):
        t0 = time.perf_counter()
        await client.ping()
        ping.append(time.perf_counter() - t0)
    stage_med, subs_med, wall_med = report.median(stage_us), report.median(subs), report.median(wall_us)
    return {
        "batches": len(batches),
        "events_per_batch": per_batch,
        "distinct_subscribers_per_batch": subs_med,
        "stage_call_wall_us_median": wall_med,
        "stage_server_us_median": stage_med,
        "commit_server_us_median": report.median(commit_us),
        "stage_server_us_per_event": stage_med / per_batch,
        "stage_server_us_per_distinct_subscriber": stage_med / subs_med,
        "stage_client_us_per_event": max(wall_med - stage_med, 0) / per_batch,
        "commit_server_us_per_event": report.median(commit_us) / per_batch,
        "stage_server_share_of_stage_wall": stage_med / wall_med,
        "python_encode_us_per_event": encode.median_s / sum(len(b) for b in batches) * 1e6,
        "ping_rtt_us_median": report.median(ping) * 1e6,
    }


async def client_profile(store: FeatureStore, ledger: AlertLedger, batches: list[list[Event]],
                         top: int = 8) -> dict[str, Any]:
    """Where the client side of stage + commit goes: cProfile over ``batches`` (an extra pass,
    not timed), the functions with the most own time, and the share spent waiting for
    redis-server (the event loop's selector poll)."""
    gc.collect()  # a pending full collection would land in whichever call allocates next
    profiler = cProfile.Profile()
    profiler.enable()
    t0 = time.perf_counter()
    for events in batches:
        await commit(ledger, await store.stage(events))
    wall = time.perf_counter() - t0
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    n_events = sum(len(b) for b in batches)
    rows = []
    for (path, line, name), (_, calls, own, cum, _) in stats.items():
        where = f"{Path(path).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "own_s": own, "cumulative_s": cum})
    rows.sort(key=lambda r: -r["own_s"])
    waiting = sum(r["own_s"] for r in rows if "poll" in r["function"] or "select" in r["function"])
    return {
        "events": n_events,
        "wall_us_per_event_profiled": wall / n_events * 1e6,
        "waiting_for_redis_share": waiting / wall if wall else None,
        "top_own_time": [{**r, "us_per_event": r["own_s"] / n_events * 1e6,
                          "share": r["own_s"] / wall} for r in rows[:top]],
    }


# ---------------------------------------------------------------------------- driver
async def bench_population(population: int, cfg: Config) -> dict[str, Any]:
    t_total = time.perf_counter()
    load_start = list(os.getloadavg())
    code_start = report.code_version(CODE_PATHS)
    factory = EventFactory(cfg.seed + population)
    keys = Keys()
    end_ms = T0 + cfg.history_days * DAY_MS
    with EmbeddedRedis() as server:
        client = hiredis_packing(aioredis.Redis.from_url(server.url))  # as the worker's
        try:
            persistence = {"appendonly": (await client.config_get("appendonly"))["appendonly"],
                           "appendfsync": (await client.config_get("appendfsync"))["appendfsync"],
                           "save": (await client.config_get("save"))["save"] or "(off)"}
            store, ledger = FeatureStore(client), AlertLedger(client)
            # the worker's state cache, filled as it commits (the preload included)
            cached = FeatureStore(client, cache=StateCache(population))
            await client.ping()
            t_warm = time.perf_counter()
            warm = getattr(features_store, "warm_up", None)
            if warm is not None:  # numba kernels: compile (or load from cache) before timing
                warm()
            warm_up_s = time.perf_counter() - t_warm
            mem_before = await client.info("memory")

            warm_events, warm_naive = min(cfg.events, 20 * cfg.batch), min(cfg.naive_events, 500)
            split_batches = min(10, max(2, cfg.events // cfg.batch))
            preloader = Preloader(
                cfg, population, cached, ledger, factory, end_ms, cfg.budget_s,
                live_events=cfg.rounds * cfg.events + warm_events + (split_batches + 10) * cfg.batch,
                naive_events=cfg.rounds * cfg.naive_events + warm_naive)
            preload = await preloader.run()
            preload["quiesce_s"] = await _quiesce(client)
            memory = await measure_memory(client, population, mem_before, cfg,
                                          preloader.full_history_subs, keys)

            naive_pool = np.arange(min(cfg.naive_subscribers, population))
            naive = NaivePerEventStore(client)
            naive_history = factory.history(naive_pool, end_ms, cfg.history_days)
            await naive.preload(naive_history)
            del naive_history

            # live rounds: each path's stream continues the event time where the previous
            # one ended, at the history's rate per subscriber (so the ids kept for the
            # lateness, and the value sizes, stay as an operator's would; a fixed span made
            # a small population's values grow round after round)
            live = LiveStream(factory, population, end_ms)
            live_naive = LiveStream(factory, naive_pool, end_ms)
            rounds: list[dict[str, Any]] = []
            cached_rounds: list[dict[str, Any]] = []
            overlapped_rounds: list[dict[str, Any]] = []
            naive_rounds: list[dict[str, Any]] = []
            commandstats: dict[str, dict[str, float]] = {}

            for r in range(cfg.rounds + 1):  # round 0 is a warm-up, not reported
                n = cfg.events if r else min(cfg.events, 20 * cfg.batch)
                events = live(n)
                batches = [events[i:i + cfg.batch] for i in range(0, len(events), cfg.batch)]
                naive_events = live_naive(cfg.naive_events if r else min(cfg.naive_events, 500))
                await _quiesce(client)
                forks = await _forks(client)
                before = _commandstats(await client.info("commandstats"))
                result = await batch_round(store, ledger, batches, [cached])
                result["aof_rewrites_started"] = await _forks(client) - forks
                _merge(commandstats, _stats_delta(before, _commandstats(await client.info("commandstats"))))
                # the same number of fresh events through the cached store; each path starts
                # with no AOF rewrite running (one the previous path set off would land in it)
                events = live(n)
                await _quiesce(client)
                forks = await _forks(client)
                cached_result = await batch_round(
                    cached, ledger, [events[i:i + cfg.batch]
                                     for i in range(0, len(events), cfg.batch)], [cached])
                cached_result["aof_rewrites_started"] = await _forks(client) - forks
                events = live(n)
                await _quiesce(client)
                forks = await _forks(client)
                overlapped_result = await overlapped_round(
                    cached, ledger, [events[i:i + cfg.batch]
                                     for i in range(0, len(events), cfg.batch)])
                overlapped_result["aof_rewrites_started"] = await _forks(client) - forks
                before = _commandstats(await client.info("commandstats"))
                naive_result = await naive_round(naive, naive_events)
                delta = _stats_delta(before, _commandstats(await client.info("commandstats")))
                naive_result["server_us_per_event"] = sum(
                    v["usec"] for k, v in delta.items() if k != "info") / len(naive_events)
                if r:
                    rounds.append(result)
                    cached_rounds.append(cached_result)
                    overlapped_rounds.append(overlapped_result)
                    naive_rounds.append(naive_result)
                else:
                    commandstats = {}
            split_events = live(split_batches * cfg.batch)
            split = await server_split(client, store, ledger,
                                       [split_events[i:i + cfg.batch]
                                        for i in range(0, len(split_events), cfg.batch)])
            profile_events = live(10 * cfg.batch)
            split["client_profile"] = await client_profile(
                store, ledger,
                [profile_events[i:i + cfg.batch] for i in range(0, len(profile_events), cfg.batch)])
            live_stream = {"events_per_subscriber_day": EVENTS_PER_SUBSCRIBER_DAY,
                           "event_time_days": (live.clock - end_ms) / DAY_MS}
            persistence_info = await client.info("persistence")
            persistence.update({k: persistence_info.get(k) for k in
                                ("aof_current_size", "aof_base_size", "aof_last_rewrite_time_sec",
                                 "aof_last_bgrewrite_status")})
            persistence["total_forks"] = (await client.info("stats")).get("total_forks")
        finally:
            await client.aclose()

    def rates(items: list[dict[str, Any]], key: str = "seconds") -> report.Timing:
        return report.Timing.of([x[key] / x["events"] for x in items])  # seconds per event

    batch_t, stage_t, naive_t = rates(rounds), rates(rounds, "stage_s"), rates(naive_rounds)
    cached_t, cached_stage_t = rates(cached_rounds), rates(cached_rounds, "stage_s")
    batch_rate = 1 / batch_t.median_s
    cached_rate = 1 / cached_t.median_s
    overlapped_t = rates(overlapped_rounds)
    overlapped_rate = 1 / overlapped_t.median_s
    naive_rate = 1 / naive_t.median_s
    seconds = time.perf_counter() - t_total
    return {
        "subscribers": population,
        "seconds_total": seconds,
        "load_avg_start": load_start,
        "load_avg_end": list(os.getloadavg()),
        "code_sha256": code_start["sha256"],
        "code_changed_during_run": report.code_version(CODE_PATHS)["sha256"] != code_start["sha256"],
        "persistence": persistence,
        "live_stream": live_stream,
        "store_warm_up_s": warm_up_s,
        "preload": preload,
        "memory": memory,
        "batch_path": {
            "batch_size": cfg.batch,
            "events_per_round": cfg.events,
            "round_trips_per_batch": 2,
            "events_per_s_median": batch_rate,
            "events_per_s_best": 1 / batch_t.min_s,
            "stage_only_events_per_s_median": 1 / stage_t.median_s,
            "stage_only_events_per_s_best": 1 / stage_t.min_s,
            "commit_share_of_time": report.median(x["commit_s"] / x["seconds"] for x in rounds),
            "distinct_subscribers_per_batch": report.median(
                x["distinct_subscribers_per_batch"] for x in rounds),
            "rounds": rounds,
            "server": split,
            "commandstats": commandstats,
        },
        "cached_batch_path": {
            "cache_capacity": population,
            "round_trips_per_batch": "1 (+1 if any subscriber is not cached)",
            "events_per_s_median": cached_rate,
            "events_per_s_best": 1 / cached_t.min_s,
            "stage_only_events_per_s_median": 1 / cached_stage_t.median_s,
            "commit_share_of_time": report.median(x["commit_s"] / x["seconds"]
                                                  for x in cached_rounds),
            "cache_hit_rate_median": report.median(x["cache_hit_rate"] or 0.0
                                                   for x in cached_rounds),
            "rounds": cached_rounds,
        },
        "overlapped_batch_path": {
            "cache_capacity": population,
            "commits_under_way": 1,
            "events_per_s_median": overlapped_rate,
            "events_per_s_best": 1 / overlapped_t.min_s,
            "stage_share_of_time": report.median(x["stage_s"] / x["seconds"]
                                                 for x in overlapped_rounds),
            "cache_hit_rate_median": report.median(x["cache_hit_rate"] or 0.0
                                                   for x in overlapped_rounds),
            **{f"{side}_cpu_us_per_event_median": report.median(
                x[f"{side}_cpu_us_per_event"] for x in overlapped_rounds)
               for side in ("client", "server", "rewrite")},
            "rounds": overlapped_rounds,
        },
        "naive_per_event": {
            "events_per_round": cfg.naive_events,
            "subscribers": len(naive_pool),
            "round_trips_per_event": 1,
            "events_per_s_median": naive_rate,
            "events_per_s_best": 1 / naive_t.min_s,
            "round_trip_share": report.median(x["round_trip_s"] / x["seconds"] for x in naive_rounds),
            "round_trip_us_per_event": report.median(x["round_trip_s"] / x["events"] * 1e6
                                                     for x in naive_rounds),
            "server_us_per_event": report.median(x["server_us_per_event"] for x in naive_rounds),
            "rounds": naive_rounds,
        },
        "ratio_batch_over_naive": batch_rate / naive_rate,
        "ratio_cached_over_naive": cached_rate / naive_rate,
        "ratio_overlapped_over_naive": overlapped_rate / naive_rate,
        "ratio_overlapped_over_cached": overlapped_rate / cached_rate,
        "targets": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "events_per_s_met": overlapped_rate >= TARGET_EVENTS_PER_S,
            "events_per_s_met_with_commits_waited_for": cached_rate >= TARGET_EVENTS_PER_S,
            "events_per_s_met_without_cache": batch_rate >= TARGET_EVENTS_PER_S,
            "bytes_per_subscriber": TARGET_BYTES_PER_SUBSCRIBER,
            # with thinned histories, judged on the full-history estimate
            "bytes_per_subscriber_met":
                memory["used_memory_per_subscriber_full_history_estimate"]
                <= TARGET_BYTES_PER_SUBSCRIBER,
        },
    }


def print_summary(result: dict[str, Any]) -> None:
    pops = result["populations"]
    fsync = pops[0]["persistence"]["appendfsync"] if pops else "?"
    report.print_table(
        "feature updates: batch path vs naive per-event round trips (events/s, medians)",
        ["subscribers", "overlapped", "cached batch", "hit rate", "batch (read+commit)",
         "stage only", "naive", "overlapped/naive", "cached/naive", "batch/naive",
         "subs/batch", "stage µs/ev server+client", f"≥ {TARGET_EVENTS_PER_S // 1000}k?"],
        [[f"{p['subscribers']:,}",
          f"{p['overlapped_batch_path']['events_per_s_median']:,.0f}",
          f"{p['cached_batch_path']['events_per_s_median']:,.0f}",
          f"{p['cached_batch_path']['cache_hit_rate_median']:.0%}",
          f"{p['batch_path']['events_per_s_median']:,.0f}",
          f"{p['batch_path']['stage_only_events_per_s_median']:,.0f}",
          f"{p['naive_per_event']['events_per_s_median']:,.0f}",
          f"{p['ratio_overlapped_over_naive']:.1f}×",
          f"{p['ratio_cached_over_naive']:.1f}×",
          f"{p['ratio_batch_over_naive']:.1f}×",
          f"{p['batch_path']['distinct_subscribers_per_batch']:,.0f}",
          f"{p['batch_path']['server']['stage_server_us_per_event']:.1f}"
          f" + {p['batch_path']['server']['stage_client_us_per_event']:.1f}",
          "yes" if p["targets"]["events_per_s_met"] else "NO"] for p in pops],
        caption=(f"target ≥ {TARGET_EVENTS_PER_S:,} events/s. cached batch = the worker's "
                 "path: states of cached subscribers come from its write-through cache, so a "
                 "batch is one commit round trip (plus a read of the uncached). overlapped = "
                 "the same, each commit landing while the next batch stages (CommitChain). "
                 f"batch = FeatureStore.stage + "
                 f"AlertLedger.commit, 2 round trips per batch of {result['config']['batch']}; "
                 "naive = 1 pipelined round trip per event. stage µs/ev: redis-server (scripts) "
                 "+ client side of the stage call. "
                 f"redis-server AOF on, appendfsync {fsync}. store: {result['store_design']}."),
    )
    rows = []
    for p in pops:
        m, pre = p["memory"], p["preload"]
        full = m["memory_usage_state_key_full_history"] or {}
        history = (f"full ~{pre['history_events_per_subscriber_full']:.0f} ev"
                   if not pre["history_scaled_down"] else
                   f"{pre['subscribers_with_full_history']:,} full ~"
                   f"{pre['history_events_per_subscriber_full']:.0f} ev, rest thinned "
                   f"~{pre['history_events_per_subscriber_thinned']:.0f} ev")
        rows.append([
            f"{p['subscribers']:,}",
            f"{m['used_memory_delta_per_subscriber']:,.0f}",
            f"{m['used_memory_per_subscriber_full_history_estimate']:,.0f}"
            if pre["history_scaled_down"] else "=",
            f"{full.get('median', float('nan')):,.0f}",
            f"{m['state_blob_bytes_median'] or float('nan'):,.0f}",
            "yes" if p["targets"]["bytes_per_subscriber_met"] else "NO",
            history,
            f"{pre['events_per_s']:,.0f}",
            f"{p['seconds_total']:.0f}",
        ])
    report.print_table(
        "Redis memory per subscriber after preload (bytes) and the preload itself",
        ["subscribers", "used_memory Δ/sub", "if all full", "MEMORY USAGE med",
         "blob med", f"≤ {TARGET_BYTES_PER_SUBSCRIBER}?", "history per subscriber",
         "preload ev/s", "run s"],
        rows,
        caption=(f"target ≤ {TARGET_BYTES_PER_SUBSCRIBER:,} B/subscriber (used_memory Δ, or "
                 "its full-history estimate when histories were thinned). "
                 "MEMORY USAGE/blob: median over a sample of full-history state keys. "
                 f"history over {result['config']['history_days']} days; preload = whole "
                 "histories per batch through stage+commit."),
    )
    for p in pops:
        o = p["overlapped_batch_path"]
        report.note(
            f"  {p['subscribers']:,}: overlapped path, CPU µs/event (medians): this process "
            f"{o['client_cpu_us_per_event_median']:.1f}, redis-server "
            f"{o['server_cpu_us_per_event_median']:.1f}, its AOF rewrites "
            f"{o['rewrite_cpu_us_per_event_median']:.1f}; AOF rewrites started in the rounds: "
            f"{[x['aof_rewrites_started'] for x in o['rounds']]}")
        s, n = p["batch_path"]["server"], p["naive_per_event"]
        report.note(
            f"  {p['subscribers']:,}: stage: {s['stage_server_us_per_distinct_subscriber']:.0f} µs "
            f"server-side per distinct subscriber ({100 * s['stage_server_share_of_stage_wall']:.0f}% "
            f"of the stage call), client side {s['stage_client_us_per_event']:.1f} µs/event; "
            f"commit {s['commit_server_us_per_event']:.1f} µs/event server-side; encode_batch "
            f"{s['python_encode_us_per_event']:.1f} µs/event; ping RTT "
            f"{s['ping_rtt_us_median']:.0f} µs; naive: {n['round_trip_us_per_event']:.0f} µs/event "
            f"awaiting its pipeline, of which {n['server_us_per_event']:.0f} µs in redis-server")
        prof = s["client_profile"]
        top = ", ".join(f"{r['function']} {r['us_per_event']:.1f}" for r in prof["top_own_time"][:5])
        report.note(f"     client profile of stage+commit, µs/event of own time: {top} "
                    f"(waiting for redis-server {100 * prof['waiting_for_redis_share']:.0f}% "
                    "of the profiled wall time)")
        if p["code_changed_during_run"]:
            report.note(f"  {p['subscribers']:,}: WARNING: the store's code changed during this "
                        "population's run; its numbers mix two versions")
        if p["preload"]["history_scaled_down"]:
            pre = p["preload"]
            report.note(
                f"  {p['subscribers']:,}: HISTORY SCALED DOWN to fit the {cfg_budget(result)} s budget "
                f"(full history estimated at {pre['probe']['estimated_full_seconds']:.0f} s): "
                f"{pre['subscribers_with_thinned_history']:,} subscribers got ≤ "
                f"{pre['history_keep_per_subscriber']} events")


def store_design() -> str:
    """Which feature store this run measured (its Redis scripts)."""
    scripts = sorted(p.name for p in resources.files("features").iterdir()
                     if p.name.endswith(".lua"))
    return "features/" + ", features/".join(scripts) if scripts else "(no Redis scripts)"


def cfg_budget(result: dict[str, Any]) -> int:
    return int(result["config"]["budget_s"])


async def run(cfg: Config) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "features",
        "started": report.utc_now(),
        "machine": report.machine_info(),
        "config": asdict(cfg),
        "targets": {"events_per_s": TARGET_EVENTS_PER_S,
                    "bytes_per_subscriber": TARGET_BYTES_PER_SUBSCRIBER},
        "notes": [
            "batch path = FeatureStore.stage + AlertLedger.commit(subscribers, {}, {}, "
            "[states=staged blobs]): one round trip each per batch; live events pick "
            "subscribers uniformly at random",
            "naive = NaivePerEventStore: one pipelined round trip per event "
            "(SADD+EXPIRE dedup, HINCRBY day buckets, HSET clocks+EXPIRE, HGETALL) and features "
            "computed in Python from the hash (the naive design, docs/benchmarks.md)",
            "rates are medians over measured rounds (a warm-up round is discarded); batch and "
            "naive rounds are interleaved in the same run against the same redis-server",
            "redis-server is EmbeddedRedis: AOF on (appendfsync as reported), RDB off",
        ],
        "populations": [],
    }
    result["store_design"] = store_design()
    result["code_version"] = report.code_version(CODE_PATHS)
    for population in cfg.populations:
        report.note(f"[bench_features] {population:,} subscribers …")
        result["populations"].append(await bench_population(population, cfg))
    result["finished"] = report.utc_now()
    return result


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", default=None,
                   help="comma-separated population sizes (default 10000,100000,1000000)")
    p.add_argument("--events", type=int, default=None, help="live events per measured round")
    p.add_argument("--batch", type=int, default=2000, help="live batch size (events)")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5)")
    p.add_argument("--naive-events", type=int, default=None, help="events per naive round")
    p.add_argument("--history-days", type=int, default=40)
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget per population; histories are thinned to fit")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--quick", action="store_true", help="10k subscribers, small counts (< 60 s)")
    a = p.parse_args(argv)
    cfg = Config(batch=a.batch, history_days=a.history_days, seed=a.seed, quick=a.quick,
                 out_dir=a.out_dir)
    if a.quick:
        cfg.populations, cfg.events, cfg.naive_events, cfg.budget_s = [10_000], 10_000, 1000, 55.0
        cfg.naive_subscribers = 2000
    if a.subscribers:
        cfg.populations = [int(x.replace("_", "")) for x in a.subscribers.split(",") if x.strip()]
    if a.events is not None:
        cfg.events = a.events
    if a.rounds is not None:
        cfg.rounds = a.rounds
    if a.naive_events is not None:
        cfg.naive_events = a.naive_events
    if a.budget_s is not None:
        cfg.budget_s = a.budget_s
    if min(cfg.populations) < 1 or cfg.events < 1 or cfg.batch < 1 or cfg.rounds < 1:
        p.error("sizes must be positive")
    return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_args(argv)
    gc_tuning.tune()  # the worker's collector settings (the cached store holds every state)
    result = asyncio.run(run(cfg))
    path = report.write_report("features", result, cfg.out_dir)
    result["report_path"] = str(path)
    print_summary(result)
    report.note(f"report: {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
