"""Scaling benchmark: events/s for 1, 2, 3... workers in one consumer group, on a single
Redis and on a 3-master Redis Cluster.

    python -m benchmarks.bench_scaling [--workers 1,2,3] [--redis single,cluster]
                                       [--subscribers N] [--days D] [--partitions P]

Each (Redis, workers) run gets a fresh embedded broker and a fresh Redis (single, or the
cluster of ``churnwatch.dev.embedded_cluster``), starts the workers, waits until the group is
stable with every worker in it, then produces the same simulator feed (faults on) in
multi-event messages and times it from the first produced event to (a) every event counted in
the workers' /metrics (summed: the processing rate) and (b) every offset committed (Faust
commits on a timer, so (b) carries up to ~3 s of commit delay). Each configuration runs
``--repeats`` times (the median by events/s is reported, every run is kept), with the CPU
seconds the workers and the redis-servers used in the timed window (Linux /proc) and the load
average before it, so the curve can be read against the cores actually available. Nothing is
compared with targets here; the report goes to ``reports/`` (or ``--out-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import report
from benchmarks.bench_e2e import (
    CODE_PATHS,
    CommitWatch,
    _encode,
    processed_count,
    scrape,
    stop_process,
)
from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.dev.embedded_cluster import EmbeddedRedisCluster
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_members
from churnwatch.infra.kafka.produce import EventProducer
from churnwatch.infra.kafka.topics import create_topics


@dataclass(frozen=True)
class Options:
    workers: tuple[int, ...] = (1, 2, 3)
    redis: tuple[str, ...] = ("single", "cluster")
    subscribers: int = 1000
    days: int = 90
    seed: int = 7
    partitions: int = 12
    per_message: int = 500
    repeats: int = 3
    timeout_s: float = 300.0
    out_dir: str | None = None
    json_output: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="bench_scaling", description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    p.add_argument("--redis", default="single,cluster", help="single, cluster or both")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--per-message", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--json", dest="json_output", action="store_true")
    a = p.parse_args(argv)
    try:
        workers = tuple(int(w) for w in a.workers.split(","))
    except ValueError:
        raise ChurnwatchError(f"--workers {a.workers!r}: use counts such as 1,2,3") from None
    redis = tuple(r.strip() for r in a.redis.split(","))
    if not workers or min(workers) < 1 or set(redis) - {"single", "cluster"}:
        raise ChurnwatchError("--workers needs counts >= 1 and --redis single and/or cluster")
    if max(workers) > a.partitions:
        raise ChurnwatchError(f"--workers {max(workers)} > --partitions {a.partitions}: the "
                              "extra workers would idle")
    if a.repeats < 1:
        raise ChurnwatchError("--repeats must be >= 1")
    return Options(workers, redis, a.subscribers, a.days, a.seed, a.partitions,
                   a.per_message, a.repeats, a.timeout_s, a.out_dir, a.json_output)


def cpu_seconds(pids: Sequence[int | None]) -> float | None:
    """User + system CPU seconds used so far by these processes (None off Linux)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def one_run(opts: Options, backend: str, n: int, lines: list[bytes]) -> dict[str, Any]:
    """Fresh broker and Redis, ``n`` workers, the feed; the timings."""
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker())
        if backend == "cluster":
            nodes = stack.enter_context(EmbeddedRedisCluster())
            redis_url, cluster, redis_pids = nodes.url, "true", [n.pid for n in nodes.nodes]
        else:
            server = stack.enter_context(EmbeddedRedis())
            redis_url, cluster, redis_pids = server.url, "false", [server.pid]
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cw-scale-")))
        asyncio.run(create_topics(broker.bootstrap, {t: opts.partitions for t in (
            EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
        group, ports, procs = f"scale-{backend}-{n}", [], []
        for k in range(n):
            ports.append(free_port())
            env = dict(os.environ, CHURNWATCH_BROKER=broker.url, CHURNWATCH_REDIS_URL=redis_url,
                       CHURNWATCH_REDIS_CLUSTER=cluster, CHURNWATCH_APP_ID=group,
                       CHURNWATCH_METRICS_PORT=str(ports[-1]),
                       CHURNWATCH_PARTITIONS=str(opts.partitions),
                       CHURNWATCH_ALERTS_JSONL=str(workdir / f"alerts-{k}.jsonl"))
            for key in ("CHURNWATCH_CONFIG", "CHURNWATCH_WEBHOOK_URL"):
                env.pop(key, None)
            log = (workdir / f"worker-{k}.log").open("wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
            stack.callback(stop_process, procs[-1])
        deadline = time.monotonic() + opts.timeout_s
        while asyncio.run(group_members(broker.bootstrap, group)) < n \
                or any(not scrape(p) for p in ports):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise ChurnwatchError(f"{n} workers did not join: "
                                      + (workdir / "worker-0.log").read_text()[-2000:])
            time.sleep(0.5)
        load = os.getloadavg()[0]
        workers_cpu, redis_cpu = cpu_seconds([p.pid for p in procs]), cpu_seconds(redis_pids)
        timed = asyncio.run(_timed(opts, broker.bootstrap, group, ports, procs, lines))
        after_w, after_r = cpu_seconds([p.pid for p in procs]), cpu_seconds(redis_pids)
        cpu = {"workers_cpu_s": round(after_w - workers_cpu, 2)
               if after_w is not None and workers_cpu is not None else None,
               "redis_cpu_s": round(after_r - redis_cpu, 2)
               if after_r is not None and redis_cpu is not None else None}
        if cpu["workers_cpu_s"]:
            cpu["events_per_worker_cpu_s"] = round(timed["events"] / cpu["workers_cpu_s"])
        return {**timed, **cpu, "load_avg_1m_before": round(load, 2)}


async def _timed(opts: Options, bootstrap: str, group: str, ports: list[int],
                 procs: list[subprocess.Popen], lines: list[bytes]) -> dict[str, Any]:
    def processed() -> int:
        return sum(processed_count(scrape(p)) for p in ports)

    async with CommitWatch(bootstrap, group, EVENTS_TOPIC) as watch:
        base = await asyncio.to_thread(processed)
        t0 = time.perf_counter()
        async with EventProducer(bootstrap, EVENTS_TOPIC, opts.partitions,
                                 opts.per_message) as producer:
            sent = await producer.send_lines(lines, lambda _: None)
        end = await watch.ends()
        processed_s = None
        deadline = time.monotonic() + opts.timeout_s
        while True:
            now = time.perf_counter() - t0
            if processed_s is None and await asyncio.to_thread(processed) - base >= sent:
                processed_s = now
            if await watch.committed() >= end:
                committed_s = time.perf_counter() - t0
                break
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise ChurnwatchError("a worker exited or the group did not catch up")
            await asyncio.sleep(0.05)
    processed_s = processed_s or committed_s
    return {"events": sent, "processed_s": round(processed_s, 3),
            "events_per_s": round(sent / processed_s),
            "committed_s": round(committed_s, 3),
            "events_per_s_committed": round(sent / committed_s)}


def run(opts: Options) -> dict[str, Any]:
    sim = Simulation(SimConfig(subscribers=opts.subscribers, days=opts.days, seed=opts.seed,
                               churn_rate=0.08, duplicate_rate=0.01, invalid_rate=0.002,
                               out_of_order_rate=0.01))
    lines = [_encode(e) for e in sim.events()]
    runs, medians = [], []
    for backend in opts.redis:
        for n in opts.workers:
            repeats = []
            for k in range(opts.repeats):
                report.note(f"{backend} Redis, {n} worker(s), run {k + 1}/{opts.repeats}...")
                repeats.append({"redis": backend, "workers": n,
                                **one_run(opts, backend, n, lines)})
            runs += repeats
            medians.append(sorted(repeats, key=lambda x: x["events_per_s"])[len(repeats) // 2])
    return {"benchmark": "scaling", "created": report.utc_now(), "options": asdict(opts),
            "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
            "feed": {"events": len(lines), "subscribers": opts.subscribers, "days": opts.days},
            "median_runs": medians, "runs": runs}


def print_summary(r: dict[str, Any]) -> None:
    report.print_table(
        f"scaling: {r['feed']['events']:,} events, {r['options']['partitions']} partitions",
        ["redis", "workers", "events/s (median)", "all runs", "to committed", "worker CPU s",
         "redis CPU s", "events/worker-CPU-s", "load before"],
        [[x["redis"], x["workers"], f"{x['events_per_s']:,}",
          " ".join(f"{y['events_per_s']:,}" for y in r["runs"]
                   if (y["redis"], y["workers"]) == (x["redis"], x["workers"])),
          f"{x['events_per_s_committed']:,}", x["workers_cpu_s"], x["redis_cpu_s"],
          x.get("events_per_worker_cpu_s"), x["load_avg_1m_before"]]
         for x in r["median_runs"]],
        caption=f"{os.cpu_count()} CPUs on this machine (shared): workers beyond the cores "
                "compete for them")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    result = run(opts)
    path = report.write_report("scaling", result, opts.out_dir)
    result["report_path"] = str(path)
    if opts.json_output:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_summary(result)
        report.note(f"report: {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
