"""Build the demo's warm-start model: the online model trained on the demo generator.

``churnwatch demo`` simulates 1,000 subscribers for 150 days; trained from nothing on that
feed the model reaches the rules' label guard (100 churned and 100 active labels) only in
the last weeks, and with the production holdout (5 %) the rules' actions hide most churners'
labels, so every alert of the demo showed the untrained score 0.50. The demo therefore
starts from this version (``churnwatch/data/demo_model.json``) and keeps learning from it.

It is a real model version, trained on the worker's own path: the generator's feed with
another seed than the demo's (``--seed`` 101; the demo runs seed 7) and twice its
subscribers (``--subscribers`` 2,000, 150 days), through the pipeline and the fleet learner (``streams.replay``) with
nobody acted on (every label learned), on a temporary redis-server. The learner's last
published model is written as a ``churnwatch-model/1`` document at stream position 0-0 (a
learner resuming from it reads the examples stream from its start) and renamed
``lr-2-demo`` (the demo's versions are ``lr-2-demo.N``). The build is deterministic:
``tests/test_demo_model.py`` rebuilds it and checks it equals the shipped file.

    python -m benchmarks.demo_model [--out churnwatch/data/demo_model.json]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.dev.simulate import SimConfig, Simulation
from online_models import model_state
from online_models.model import ChurnModel
from streams.records import Record
from streams.replay import replay

OUT = Path(__file__).resolve().parents[1] / "churnwatch" / "data" / "demo_model.json"
VERSION = "lr-2-demo"
SEED, SUBSCRIBERS = 101, 2000


def feed(subscribers: int, days: int, seed: int) -> list[Record]:
    """The generator's feed (no injected faults) as consumed records."""
    sim = Simulation(SimConfig(subscribers=subscribers, days=days, seed=seed))
    return [Record("churn.events", 0, k, orjson.dumps(raw)) for k, raw in enumerate(sim.events())]


def build(subscribers: int = SUBSCRIBERS, days: int = 150, seed: int = SEED,
          batch: int = 2000) -> bytes:
    """The warm-start document (deterministic for the same arguments)."""
    records = feed(subscribers, days, seed)

    async def run(url: str) -> ChurnModel:
        client = aioredis.Redis.from_url(url)
        try:
            result = await replay(client, records, batch=batch, holdout=1.0)
        finally:
            await client.aclose()
        assert result.model is not None
        return result.model

    with EmbeddedRedis(appendfsync="no") as server:
        model = asyncio.run(run(server.url))
    model.version = VERSION
    return model_state.encode(model, "0-0")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.demo_model",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    p.add_argument("--days", type=int, default=150)
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args(argv)
    blob = build(a.subscribers, a.days, a.seed)
    a.out.write_bytes(blob + b"\n")
    model, _ = model_state.decode(blob)
    positives, negatives = model.label_counts()
    print(f"{a.out}: {len(blob):,} bytes, {positives:,} churned and {negatives:,} active "
          "labels learned")


if __name__ == "__main__":
    main()
