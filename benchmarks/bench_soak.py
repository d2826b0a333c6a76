"""Soak: one worker under a fixed offered load for minutes; does its memory grow?

    churnwatch bench-soak [--minutes 10] [--rate 5000]
    python -m benchmarks.bench_soak [--minutes M] [--rate R] [--out-dir DIR]

The feed is the simulator's (faults on; a fixed population over 300 simulated days, so every
subscriber is seen within the warm-up), generated while it is sent, in multi-event messages
every 100 ms. Every 5 s the worker's resident set (``/proc/<pid>/status`` VmRSS), the events it
has processed (/metrics) and Redis ``used_memory`` are sampled. The report gives RSS at the
end of the warm-up (first 20 %), at the end, and the least-squares slope of RSS over the time
after warm-up, in MB per 10 minutes. A slope near zero with events flowing is "no growth";
Redis memory grows with the subscribers seen, which is expected and reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis

from benchmarks import report
from benchmarks.bench_e2e import (CODE_PATHS, Bench, Options, _encode, processed_count, scrape,
                                  stop_process, wait_for_group)
from churnwatch.config import EVENTS_TOPIC
from churnwatch.errors import ChurnwatchError
from churnwatch.produce import EventProducer
from churnwatch.simulate import SimConfig, Simulation

SAMPLE_S = 5.0
TICK_S = 0.1
WARMUP_FRACTION = 0.2


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ChurnwatchError(f"no VmRSS for pid {pid}")


def slope_mb_per_10min(samples: list[dict[str, float]]) -> float | None:
    """Least-squares slope of RSS (MB) against time, scaled to 10 minutes."""
    if len(samples) < 3:
        return None
    t = np.array([s["t"] for s in samples])
    mb = np.array([s["rss_bytes"] for s in samples]) / 1e6
    return float(np.polyfit(t, mb, 1)[0] * 600)


async def soak(bench: Bench, worker: Any, rate: float, seconds: float,
               seed: int) -> list[dict[str, float]]:
    # enough simulated subscriber-days for the whole run (~2.1 events per subscriber-day), over
    # 300 days: a fixed population whose subscribers are all seen, and whose 35-day windows
    # fill, within the warm-up, so bounded per-subscriber memory (the state cache, the id
    # memo) is full before the slope is measured, as at an operator with a steady base
    days = 300
    subs = max(1000, int(rate * seconds * 1.2 / (2.1 * days)))
    feed = (_encode(e) for e in Simulation(SimConfig(
        subscribers=subs, days=days, seed=seed, churn_rate=0.08, duplicate_rate=0.01,
        invalid_rate=0.002, out_of_order_rate=0.01)).events())
    r = redis.Redis.from_url(bench.redis_url)
    await wait_for_group(bench.bootstrap, bench.app_id, worker)
    base = processed_count(scrape(bench.metrics_port))
    samples: list[dict[str, float]] = []
    task = bench.progress.add_task(f"soak at {report.si(rate)} ev/s", total=seconds)
    async with EventProducer(bench.bootstrap, EVENTS_TOPIC, bench.opts.partitions,
                             bench.opts.per_message) as producer:
        t0 = time.perf_counter()
        sent, next_sample = 0, 0.0
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                chunk = list(itertools.islice(feed, due))
                if not chunk:
                    raise ChurnwatchError("the simulated feed ran out before the soak ended")
                sent += await producer.send_lines(chunk)
            if elapsed >= next_sample:
                if worker.poll() is not None:
                    raise ChurnwatchError("the worker exited during the soak:\n"
                                          + bench.worker_log.read_text()[-3000:])
                processed = processed_count(await asyncio.to_thread(scrape, bench.metrics_port))
                samples.append({"t": round(elapsed, 2), "rss_bytes": rss_bytes(worker.pid),
                                "processed": processed - base, "sent": sent,
                                "redis_used_memory": int(r.info("memory")["used_memory"])})
                next_sample += SAMPLE_S
                bench.progress.update(task, completed=elapsed)
            await asyncio.sleep(TICK_S)
    r.close()
    return samples


def summarise(samples: list[dict[str, float]], seconds: float, rate: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t"] >= seconds * WARMUP_FRACTION]
    first, last = (steady[0] if steady else samples[0]), samples[-1]
    return {
        "offered_events_per_s": rate, "seconds": seconds, "samples": len(samples),
        "events_sent": int(last["sent"]), "events_processed": int(last["processed"]),
        "rss_mb_after_warmup": round(first["rss_bytes"] / 1e6, 1),
        "rss_mb_end": round(last["rss_bytes"] / 1e6, 1),
        "rss_mb_max": round(max(s["rss_bytes"] for s in samples) / 1e6, 1),
        "rss_slope_mb_per_10min_after_warmup": (round(v, 2) if (v := slope_mb_per_10min(steady))
                                                is not None else None),
        "redis_mb_after_warmup": round(first["redis_used_memory"] / 1e6, 1),
        "redis_mb_end": round(last["redis_used_memory"] / 1e6, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5000.0, help="offered events/s")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    a = p.parse_args(argv)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f} s"),
                        TimeElapsedColumn(), console=console)
    bench = Bench(Options(seed=a.seed), console, progress)
    seconds = a.minutes * 60
    with progress:
        try:
            bench.start()
            worker = bench.start_worker()
            samples = asyncio.run(soak(bench, worker, a.rate, seconds, a.seed))
            stop_process(worker)
        finally:
            bench.close()
    result = {"benchmark": "soak", "created": report.utc_now(),
              "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
              "summary": summarise(samples, seconds, a.rate), "samples": samples}
    path = report.write_report("soak", result, a.out_dir)
    s = result["summary"]
    report.print_table(
        f"soak: {a.minutes:g} min at {a.rate:,.0f} events/s offered",
        ["events sent", "processed", "RSS after warm-up MB", "RSS end MB", "RSS max MB",
         "RSS slope MB/10 min", "Redis MB (warm-up → end)"],
        [[f"{s['events_sent']:,}", f"{s['events_processed']:,}", s["rss_mb_after_warmup"],
          s["rss_mb_end"], s["rss_mb_max"], s["rss_slope_mb_per_10min_after_warmup"],
          f"{s['redis_mb_after_warmup']} → {s['redis_mb_end']}"]])
    report.note(f"report: {path}")
    result["report_path"] = str(path)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
