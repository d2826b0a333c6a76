"""Run in a fresh interpreter: ``python -m tests.support.kernels_after_warm_up REDIS_URL``.

Builds the worker's pipeline (``churnwatch.assembly.build_pipeline``: what a worker does
before it takes partitions, the kernels' warm-up included), then runs a simulated feed
through it (state cache on, batches wider than half a new cache index) and through the
replay with the same ruleset (the silence sweep, delayed labels and the fleet learner), and
prints, as JSON, every numba kernel that gained a compiled signature meanwhile: each one
would have been compiled (or loaded from numba's cache) while a worker processed.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import orjson
from numba.core.registry import CPUDispatcher


def _signatures() -> dict[str, set[str]]:
    return {f"{d.py_func.__module__}.{d.py_func.__qualname__}": {str(s) for s in d.signatures}
            for d in gc.get_objects() if isinstance(d, CPUDispatcher)}


async def _feed(url: str) -> dict[str, list[str]]:
    from churnwatch.assembly import build_pipeline
    from churnwatch.dev.simulate import SimConfig, generate
    from churnwatch.infra.config import Settings
    from churnwatch.infra.redis.connect import connect
    from churnwatch.infra.runtime.metrics import Metrics
    from features.arena import INITIAL_SLOTS
    from streams.records import Record
    from streams.replay import records, replay
    from tests.support.label_oracle import Collector

    events, _ = generate(SimConfig(subscribers=INITIAL_SLOTS // 2 + 100, days=75, seed=3))
    lines = [orjson.dumps(e) for e in events]
    settings = Settings(broker="kafka://127.0.0.1:1", redis_url=url)
    redis = connect(settings)
    try:
        pipeline = build_pipeline(settings, redis, Metrics())
        before = _signatures()
        feed = [Record("churn.events", 0, i, line, 0) for i, line in enumerate(lines)]
        for k in range(0, len(feed), 5_000):
            await pipeline.run(feed[k:k + 5_000], Collector())
        await redis.flushdb()
        await replay(redis, records(lines), batch=2_000, rules=pipeline.rules)
    finally:
        await redis.aclose()
    after = _signatures()
    late = {name: sorted(sigs - before.get(name, set())) for name, sigs in after.items()}
    return {name: sigs for name, sigs in sorted(late.items()) if sigs}


if __name__ == "__main__":
    print(orjson.dumps(asyncio.run(_feed(sys.argv[1]))).decode())
