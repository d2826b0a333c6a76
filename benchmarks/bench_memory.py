"""Redis memory per subscriber, all in: what the worker keeps for each subscriber and its
share of the shared keys, measured with ``used_memory`` at 100k and 1M subscribers.

    python -m benchmarks.bench_memory [--subscribers 100000,1000000] [--sample 2000]
                                      [--days 400] [--churn-rate 0.08]

1. **A sample through the worker's pipeline.** ``--sample`` simulated subscribers over
   ``--days`` days (``churnwatch.dev.simulate``, its default churn rate) run through the
   worker's own pipeline (``churnwatch.assembly.build_pipeline``: features with their snapshot
   records, rules, model, risk history, silence index, cooldowns and the alert ledger) on an
   embedded redis-server, with the worker's Redis sinks: the alert feed (``cw:feed``) and
   the team work queues (``cw:queue:<team>`` and their guards). The silence sweep runs at
   the end, so idle and churned subscribers are expired as in a worker.
2. **Where the bytes go.** ``MEMORY USAGE`` of every key, grouped by kind.
3. **Scaled to N subscribers.** On a fresh redis-server every per-subscriber key of the
   sample is copied (``DUMP``/``RESTORE``: the same encoding) under new subscriber ids until
   N subscribers are stored, each copy also in the silence index; the shared keys (work
   queues, their guards, the feed) grow with the alerts, each stream up to its ``maxlen``
   (the worker's defaults) and the guards to the last 30 days' (their expiry). The other
   shared keys are not copied: the learner's examples stream (trimmed as the learner, not
   run here, learns them), the effect ledger and the watermarks do not grow with the
   subscribers. ``used_memory`` after minus before, over N, is the figure; the alert rate
   is the sample's (reported), so the alert-related share holds for that rate.

The report (``reports/bench_memory.json``) gives, per population, bytes per subscriber
all-in and per kind of key. Redis overhead per key (the dict entry, the key string, the
expiry) is included, since ``used_memory`` counts it; replicas and the fork of an AOF
rewrite are not (CAPACITY.md).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from alerting.feed import AlertFeed
from alerting.workqueue import TeamQueues
from benchmarks import report
from churnwatch.assembly import build_pipeline
from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.runtime.metrics import Metrics
from streams.records import Record

PER_RECORD = 500
GUARD_DAYS = 30  # TeamQueues' guard TTL
BATCH_RECORDS = 4
# per-subscriber keys: cw:{<subscriber>}:<kind>
_PER_SUBSCRIBER = re.compile(rb"^cw:\{(\+?[0-9]+)\}:(\w+)$")


class SinkPublisher:
    """The worker's Redis sinks (feed, work queues); Kafka outputs are dropped."""

    wants_scores = False

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.sinks = [AlertFeed(redis, maxlen=settings.web_feed_maxlen),
                      TeamQueues(redis, maxlen=settings.work_queue_maxlen)]
        self.alerts_sent = 0

    async def dead_letters(self, payloads: list[bytes]) -> None:
        return None

    async def forward(self, topic: str, messages: list[Any]) -> None:
        return None

    async def alerts(self, alerts: list[Any], payloads: list[bytes]) -> None:
        for sink in self.sinks:
            await sink.write(alerts, payloads)
        self.alerts_sent += len(alerts)

    async def scores(self, payloads: list[bytes]) -> None:
        return None


def kind_of(key: bytes) -> str:
    """The kind of a key, for the breakdown."""
    m = _PER_SUBSCRIBER.match(key)
    if m:
        return f"subscriber:{m.group(2).decode()}"
    if b":action:" in key:
        return "work-queue guard"
    if key.startswith(b"cw:queue:"):
        return "work queue"
    if key.startswith(b"cw:silence:"):
        return "silence index"
    if key == b"cw:feed":
        return "alert feed"
    return "other:" + re.sub(rb"[0-9]+", b"#", key).decode(errors="replace")


async def run_sample(redis_url: str, sample: int, days: int, churn_rate: float,
                     seed: int) -> dict[str, Any]:
    """The sample through the worker's pipeline and one silence sweep of its partition."""
    settings = Settings(broker="kafka://127.0.0.1:1", redis_url=redis_url, work_queues=True)
    redis = connect(settings)
    pipeline = build_pipeline(settings, redis, Metrics())
    publisher = SinkPublisher(redis, settings)
    sim = Simulation(SimConfig(subscribers=sample, days=days, churn_rate=churn_rate, seed=seed))
    lines = [msgspec.json.encode(e) for e in sim.events()]
    now = int(time.time() * 1000)
    records = [Record("churn.events", 0, i, b"[" + b",".join(lines[j:j + PER_RECORD]) + b"]",
                      now) for i, j in enumerate(range(0, len(lines), PER_RECORD))]
    t0 = time.perf_counter()
    for i in range(0, len(records), BATCH_RECORDS):
        await pipeline.run(records[i:i + BATCH_RECORDS], publisher)
    swept = 0
    for _ in range(1000):  # every subscriber due at the end of the feed (idle ones expire)
        done = await pipeline.sweep(0, publisher, limit=5000)
        if not done.outcomes.get("due"):
            break
        swept += done.outcomes["due"]
    await redis.aclose()
    return {"events": len(lines), "alerts": publisher.alerts_sent, "swept": swept,
            "seconds": round(time.perf_counter() - t0, 1)}


async def breakdown(client: Any) -> tuple[dict[str, dict[str, int]], set[bytes]]:
    """``MEMORY USAGE`` (bytes, keys) per kind of key, and the subscribers with a key."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    subscribers: set[bytes] = set()
    chunk: list[bytes] = []

    async def measure() -> None:
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, await pipe.execute()):
            kind = kinds[kind_of(key)]
            kind["keys"] += 1
            kind["bytes"] += size or 0
            m = _PER_SUBSCRIBER.match(key)
            if m:
                subscribers.add(m.group(1))
        chunk.clear()

    async for key in client.scan_iter(count=1000):
        chunk.append(key)
        if len(chunk) >= 5000:
            await measure()
    await measure()
    return dict(kinds), subscribers


async def scale(sample_url: str, target_url: str, population: int,
                days: int) -> dict[str, Any]:
    """Copy the sample's keys onto ``target_url`` until ``population`` subscribers are
    stored; returns the memory figures. ``days``: the sample's, for the guards' share."""
    src = connect(Settings(broker="kafka://127.0.0.1:1", redis_url=sample_url))
    dst = connect(Settings(broker="kafka://127.0.0.1:1", redis_url=target_url))
    await dst.flushall()
    before = await dst.info("memory")
    per_sub: dict[bytes, list[tuple[bytes, bytes, int]]] = defaultdict(list)
    shared: list[bytes] = []
    async for key in src.scan_iter(count=1000):
        m = _PER_SUBSCRIBER.match(key)
        if m:
            ttl = await src.pttl(key)
            per_sub[m.group(1)].append((m.group(2), await src.dump(key), max(ttl, 0)))
        else:
            shared.append(key)
    sample_subs = sorted(per_sub)
    copies = -(-population // len(sample_subs))
    stored = 0
    for c in range(copies):
        pipe = dst.pipeline(transaction=False)
        for n, sid in enumerate(sample_subs):
            if stored >= population:
                break
            new = f"+1{c:05d}{n:06d}".encode()
            for kind, blob, ttl in per_sub[sid]:
                pipe.restore(b"cw:{" + new + b"}:" + kind, ttl, blob)
            pipe.zadd(f"cw:silence:{{p{stored % 12}}}:due", {new: 1_767_225_600_000 + n})
            stored += 1
            if len(pipe) >= 5000:
                await pipe.execute()
                pipe = dst.pipeline(transaction=False)
        await pipe.execute()
    # the shared keys grow with the alerts (copies of the sample's entries), up to maxlen
    settings = Settings()
    for key in shared:
        kind = kind_of(key)
        if kind == "work queue":
            entries = await src.xrange(key)
            pipe = dst.pipeline(transaction=False)
            for c in range(copies):
                for _, fields in entries:
                    pipe.xadd(key, fields, maxlen=settings.work_queue_maxlen, approximate=True)
                if len(pipe) >= 5000:
                    await pipe.execute()
                    pipe = dst.pipeline(transaction=False)
            await pipe.execute()
        elif kind == "alert feed":
            entries = await src.xrange(key)
            pipe = dst.pipeline(transaction=False)
            for c in range(copies):
                for _, fields in entries:
                    pipe.xadd(key, fields, maxlen=settings.web_feed_maxlen, approximate=True)
                if len(pipe) >= 5000:
                    await pipe.execute()
                    pipe = dst.pipeline(transaction=False)
            await pipe.execute()
        elif kind == "work-queue guard":
            # a guard expires 30 days (wall clock) after its entry: of the sample's days of
            # alerts, only the last 30 days' guards are alive at once
            blob, ttl = await src.dump(key), max(await src.pttl(key), 0)
            pipe = dst.pipeline(transaction=False)
            for c in range(round(copies * min(1.0, GUARD_DAYS / days))):
                pipe.restore(key + f":{c}".encode(), ttl, blob)
                if len(pipe) >= 5000:
                    await pipe.execute()
                    pipe = dst.pipeline(transaction=False)
            await pipe.execute()
    after = await dst.info("memory")
    kinds, _ = await breakdown(dst)
    await src.aclose()
    await dst.aclose()
    used = after["used_memory"] - before["used_memory"]
    return {"subscribers": population, "copies_of_the_sample": copies,
            "used_memory_delta": used, "used_memory_per_subscriber": round(used / population, 1),
            "used_memory_dataset_delta": (after.get("used_memory_dataset", 0)
                                          - before.get("used_memory_dataset", 0)),
            "mem_fragmentation_ratio": after.get("mem_fragmentation_ratio"),
            "bytes_per_subscriber_by_kind": {
                k: round(v["bytes"] / population, 1) for k, v in sorted(
                    kinds.items(), key=lambda kv: -kv[1]["bytes"])} if kinds else None}


def per_subscriber(kinds: dict[str, dict[str, int]], subscribers: int) -> dict[str, float]:
    return {k: round(v["bytes"] / subscribers, 1)
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"])}


async def run(populations: Sequence[int], sample: int, days: int, churn_rate: float,
              seed: int) -> dict[str, Any]:
    with EmbeddedRedis() as sample_redis, EmbeddedRedis() as target:
        ran = await run_sample(sample_redis.url, sample, days, churn_rate, seed)
        client = connect(Settings(broker="kafka://127.0.0.1:1", redis_url=sample_redis.url))
        kinds, subs = await breakdown(client)
        counts = Counter(kind_of(k) for k in await client.keys("*"))
        await client.aclose()
        result: dict[str, Any] = {
            "sample": {**ran, "subscribers_simulated": sample, "days": days,
                       "churn_rate": churn_rate, "subscribers_stored": len(subs),
                       "alerts_per_stored_subscriber_per_30_days": round(
                           ran["alerts"] / len(subs) / days * 30, 4),
                       "keys_by_kind": dict(counts),
                       "memory_usage_bytes_per_stored_subscriber_by_kind":
                           per_subscriber(kinds, len(subs))},
            "populations": []}
        for n in populations:
            t0 = time.perf_counter()
            figures = await scale(sample_redis.url, target.url, n, days)
            figures["seconds"] = round(time.perf_counter() - t0, 1)
            result["populations"].append(figures)
            print(f"{n:>9,} subscribers: {figures['used_memory_per_subscriber']:,.0f} B each "
                  f"(used_memory delta {figures['used_memory_delta'] / 2**20:,.0f} MiB)",
                  file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="100000,1000000",
                        help="populations to measure, comma-separated")
    parser.add_argument("--sample", type=int, default=2000,
                        help="simulated subscribers run through the pipeline")
    parser.add_argument("--days", type=int, default=400,
                        help="simulated days (400: the alert ledger's and recent alerts' TTL)")
    parser.add_argument("--churn-rate", type=float, default=SimConfig.churn_rate)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    populations = [int(x) for x in args.subscribers.split(",") if x]
    result = asyncio.run(run(populations, args.sample, args.days, args.churn_rate, args.seed))
    data = {"benchmark": "bench_memory", "at": report.utc_now(),
            "machine": report.machine_info(), **result}
    path = report.write_report("bench_memory", data)
    print(f"report: {path}", file=sys.stderr)
    return data


if __name__ == "__main__":
    main()
