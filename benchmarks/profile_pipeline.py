"""Where a worker's time goes, without Kafka: the pipeline alone on a real redis-server.

    python -m benchmarks.profile_pipeline [--subscribers N] [--days D] [--batch EVENTS]
                                          [--per-record EVENTS] [--pstats FILE]

Builds the worker's pipeline (``churnwatch.assembly.build_pipeline``: same rules, model, playbook,
store) on an embedded redis-server, feeds the simulator's feed (faults on) as records of 500
events (``--per-record 1``: one plain event per record, as standard producers write them),
``--batch`` events per batch, started (``Pipeline.start``) while the previous batch's
delivery finishes, as the Faust agent does (one delivery ahead), and publishes to a publisher
that only counts. It prints

- the pipeline's own rate (events/s with no broker, no Faust) next to the per-stage seconds
  from its metrics, and
- a cProfile of the same run, grouped by the module that owns the time (self time), so the
  walls can be named: JSON decoding, the feature kernel, Redis round trips and argument
  packing, alert decisions, model scoring;
- redis-server time per command, and the garbage collector's pauses (with the worker's
  collector settings, or CPython's with ``--gc default``).

Compare its rate with ``churnwatch bench``'s end-to-end rate: the difference is the framework
(Faust, aiokafka) and the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from benchmarks import report
from churnwatch.assembly import build_pipeline
from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.runtime import gc_tuning
from churnwatch.infra.runtime.metrics import Metrics
from streams.records import Record

_encode = msgspec.json.Encoder().encode
PER_RECORD = 500


class CountingPublisher:
    """Takes every output at once and counts it (durable by definition here)."""

    wants_scores = False

    def __init__(self) -> None:
        self.alerts_sent = self.dead_lettered = 0

    async def dead_letters(self, payloads: list[bytes]) -> None:
        self.dead_lettered += len(payloads)

    async def alerts(self, alerts: list[Any], payloads: list[bytes]) -> None:
        self.alerts_sent += len(alerts)

    async def scores(self, payloads: list[bytes]) -> None:
        return None


def records_of(lines: list[bytes], per_record: int = PER_RECORD) -> list[Record]:
    """Records of ``per_record`` events: JSON arrays (as the HTTP ingest batches them), or
    with 1 plain single-event messages, as a standard producer writes them."""
    now = int(time.time() * 1000)
    if per_record == 1:
        return [Record("churn.events", 0, i, line, now) for i, line in enumerate(lines)]
    return [Record("churn.events", 0, i, b"[" + b",".join(lines[j:j + per_record]) + b"]", now)
            for i, j in enumerate(range(0, len(lines), per_record))]


async def run_feed(redis_url: str, records: list[Record], batch_records: int,
                   profiler: cProfile.Profile | None) -> dict[str, Any]:
    settings = Settings(broker="kafka://127.0.0.1:1", redis_url=redis_url)
    redis = connect(settings)  # the worker's client
    metrics = Metrics()
    pipeline = build_pipeline(settings, redis, metrics)
    publisher = CountingPublisher()
    await redis.config_resetstat()
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    delivering = None
    for i in range(0, len(records), batch_records):
        delivery = await pipeline.start(records[i:i + batch_records], publisher)
        if delivering is not None:  # one delivery ahead, as the agent's InOrderAcks
            await delivering
        delivering = delivery
    if delivering is not None:
        await delivering
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    server = {name.removeprefix("cmdstat_"): round(stat["usec"] / 1e6, 3)
              for name, stat in (await redis.info("commandstats")).items()}
    await redis.flushdb()
    await redis.aclose()
    stages = {}
    for family in metrics.registry.collect():
        if family.name == "churnwatch_stage_duration_seconds":
            for s in family.samples:
                if s.name.endswith("_sum"):
                    stages[s.labels["stage"]] = round(s.value, 3)
    return {"elapsed_s": round(elapsed, 3), "stages_s": stages,
            "redis_server_s": dict(sorted(server.items(), key=lambda kv: -kv[1])),
            "alerts": publisher.alerts_sent, "dead_letters": publisher.dead_lettered}


def by_module(stats: pstats.Stats, total: float, top: int = 14) -> list[tuple[str, float, float]]:
    """Self time grouped by owning module (our packages by module, others by library)."""
    owners: dict[str, float] = defaultdict(float)
    for (filename, _, func), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace("\\", "/")
        if "site-packages/" in path:
            owner = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith("~") or path.startswith("<"):
            owner = f"builtin {func}" if tottime > total * 0.01 else "builtins (other)"
        else:
            parts = path.rsplit("/", 2)[-2:]
            owner = "/".join(parts) if parts[0] in {"features", "rules", "alerting", "streams",
                                                   "online_models", "churnwatch"} else "python stdlib"
        owners[owner] += tottime
    ranked = sorted(owners.items(), key=lambda kv: -kv[1])[:top]
    return [(k, round(v, 3), round(100 * v / total, 1)) for k, v in ranked]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="profile_pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--days", type=int, default=150)
    p.add_argument("--batch", type=int, default=5000, help="events per pipeline run")
    p.add_argument("--per-record", type=int, default=PER_RECORD,
                   help="events per record (1: one plain event per message, as standard "
                        "producers write them)")
    p.add_argument("--gc", choices=("worker", "default"), default="worker",
                   help="the worker's collector settings (churnwatch.infra.runtime.gc_tuning) or CPython's")
    p.add_argument("--pstats", default=None, metavar="FILE",
                   help="also write the cProfile stats (read with `python -m pstats FILE`)")
    p.add_argument("--out-dir", default=None)
    a = p.parse_args(argv)
    sim = Simulation(SimConfig(subscribers=a.subscribers, days=a.days, seed=7,
                               duplicate_rate=0.01, invalid_rate=0.002, out_of_order_rate=0.01))
    lines = [_encode(e) for e in sim.events()]
    records = records_of(lines, a.per_record)
    batch_records = max(1, a.batch // a.per_record)
    if a.gc == "worker":
        gc_tuning.tune()
    with EmbeddedRedis() as server:
        with gc_tuning.pauses() as gc_pauses:
            plain = asyncio.run(run_feed(server.url, records, batch_records, None))
        profiler = cProfile.Profile()
        asyncio.run(run_feed(server.url, records, batch_records, profiler))
    stats = pstats.Stats(profiler)
    if a.pstats:
        stats.dump_stats(a.pstats)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    result = {"benchmark": "profile_pipeline", "created": report.utc_now(),
              "machine": report.machine_info(),
              "feed": {"events": len(lines), "subscribers": a.subscribers, "days": a.days,
                       "events_per_run": a.batch, "events_per_record": a.per_record},
              "unprofiled": {**plain, "events_per_s": round(len(lines) / plain["elapsed_s"])},
              "gc": {"settings": a.gc, "pauses_by_generation": {
                  g: {"count": len(v), "total_s": round(sum(v), 3), "max_ms": round(1000 * max(v), 1)}
                  for g, v in sorted(gc_pauses.items())}},
              "profiled_total_s": round(total, 3),
              "self_time_by_module": by_module(stats, total)}
    path = report.write_report("profile", result, a.out_dir)
    report.print_table(
        f"pipeline without Kafka: {len(lines):,} events, {a.batch} events per run",
        ["events/s", "elapsed s", *[f"{k} s" for k in plain["stages_s"]], "alerts"],
        [[f"{result['unprofiled']['events_per_s']:,}", plain["elapsed_s"],
          *plain["stages_s"].values(), plain["alerts"]]])
    report.print_table(f"garbage collector ({a.gc} settings, first run)",
                       ["generation", "collections", "total s", "longest ms"],
                       [[g, v["count"], v["total_s"], v["max_ms"]]
                        for g, v in result["gc"]["pauses_by_generation"].items()])
    report.print_table("redis-server time by command (first run)", ["command", "s"],
                       list(plain["redis_server_s"].items())[:8])
    report.print_table("self time by owner (cProfile, second run)", ["owner", "s", "%"],
                       result["self_time_by_module"])
    report.note(f"report: {path}")
    result["report_path"] = str(path)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
