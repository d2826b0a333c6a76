"""Soak: one worker under a fixed offered load for minutes; does its memory grow?

    churnwatch bench-soak [--minutes 10] [--rate 5000]
    python -m benchmarks.bench_soak [--minutes M] [--rate R] [--warmup-days D]
                                    [--warmup-backlog B] [--measured-days N] [--out-dir DIR]

The feed is the simulator's (faults on, a fixed population), generated while it is sent, in
two phases:

1. **warm-up**: the feed's first ``--warmup-days`` simulated days (default: the longest state
   window, 6 calendar months of spend, plus two weeks: 200 days), sent as fast as the worker
   keeps up (at most ``--warmup-backlog`` events ahead of it, default 2,000: a few times
   the measured phase's batches, so the allocator's high-water mark is not raised far above
   what those need), then a wait until it has processed every one. Every subscriber has
   been seen and every state window is full, so the per-subscriber state values (and the
   worker's copy of them) have their steady size.
2. **measured**: ``--rate`` events/s (default 5,000) for ``--minutes``, in multi-event
   messages every 100 ms, from the next ``--measured-days`` simulated days; the population
   is sized so those days hold the phase's events with a margin.

Every 5 s (both phases) the worker's resident set (``/proc/<pid>/status`` VmRSS), glibc's
main heap (the ``[heap]`` mapping's Rss in ``/proc/<pid>/smaps``), the events it has
processed and its batches (/metrics), and Redis ``used_memory`` are sampled, each sample
flagged by phase. The summary is over the measured phase only: RSS at its start and end and
the least-squares slope of RSS over it (also by thirds), in MB per 10 minutes, and the
largest backlog (sent - processed). A slope near zero with events flowing is "no growth".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from benchmarks import report
from benchmarks.bench_e2e import (
    CODE_PATHS,
    Bench,
    Options,
    _encode,
    processed_count,
    scrape,
    stop_process,
    wait_for_group,
)
from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import EVENTS_TOPIC
from churnwatch.infra.kafka.produce import EventProducer
from features.kernel import D_SIZE, DAY_MS, M_SIZE, W35_MS

SAMPLE_S = 5.0
TICK_S = 0.1
WARMUP_TICK_S = 0.05
# events the warm-up sends ahead of what the worker has processed; this bounds its batches,
# and so the allocator's high-water mark the measured phase starts from (a 40,000 backlog:
# batches of ~15k events, glibc's heap 205 MB and RSS 524 MB; 2,000: 87 MB and 354 MB)
WARMUP_BACKLOG = 2_000
WARMUP_STALL_S = 180.0      # the worker processing nothing for this long fails the warm-up
MARGIN_DAYS = 14
# the longest state window, in days: the spend-months ring (M_SIZE calendar months of up to
# 31 days), the usage-day ring or the counted events' 35 days, whichever is longer
LONGEST_WINDOW_DAYS = max(M_SIZE * 31, D_SIZE, W35_MS // DAY_MS)
WARMUP_DAYS = LONGEST_WINDOW_DAYS + MARGIN_DAYS
MEASURED_DAYS = 200
EVENTS_PER_SUBSCRIBER_DAY = 2.08    # the simulator's, faults included (measured: 400 days)
FEED_MARGIN = 1.15


@dataclass(frozen=True)
class Plan:
    """The feed's shape: simulated days of each phase and the population; and how far
    ahead of the worker the warm-up may send (which bounds its batches)."""
    warmup_days: int
    measured_days: int
    subscribers: int
    warmup_backlog: int = WARMUP_BACKLOG


def plan(rate: float, seconds: float, warmup_days: int = WARMUP_DAYS,
         measured_days: int = MEASURED_DAYS, warmup_backlog: int = WARMUP_BACKLOG) -> Plan:
    """A population whose ``measured_days`` hold ``rate * seconds`` events with a margin."""
    if warmup_days < 0 or measured_days < 1 or warmup_backlog < 1:
        raise ChurnwatchError("--warmup-days must be >= 0, --measured-days and "
                              "--warmup-backlog >= 1")
    subs = math.ceil(rate * seconds * FEED_MARGIN / (EVENTS_PER_SUBSCRIBER_DAY * measured_days))
    return Plan(warmup_days, measured_days, max(1000, subs), warmup_backlog)


def split_at(events: Iterator[dict], boundary_ms: int) -> tuple[Iterator[dict], Iterator[dict]]:
    """(events before the first one stamped at or after ``boundary_ms``, the rest).

    Only integer timestamps (the simulator's) mark the boundary: its invalid records' are
    strings; a late or duplicate record (an earlier stamp) released after it goes with the
    rest. The second iterator is to be used once the first is exhausted."""
    held: list[dict] = []

    def before() -> Iterator[dict]:
        for ev in events:
            ts = ev.get("ts")
            if isinstance(ts, int) and ts >= boundary_ms:
                held.append(ev)
                return
            yield ev

    def after() -> Iterator[dict]:
        yield from held
        yield from events

    return before(), after()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ChurnwatchError(f"no VmRSS for pid {pid}")


def heap_bytes(pid: int) -> int:
    """Resident bytes of a process's ``[heap]`` mapping (glibc's main arena), 0 if none."""
    in_heap = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and " " in line and "-" in line.split(" ", 1)[0]:
                in_heap = line.rstrip().endswith("[heap]")
            elif in_heap and line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    return 0


def slope_mb_per_10min(samples: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of RSS (MB) against time, scaled to 10 minutes."""
    if len(samples) < 3:
        return None
    t = np.array([s["t"] for s in samples])
    mb = np.array([s["rss_bytes"] for s in samples]) / 1e6
    return float(np.polyfit(t, mb, 1)[0] * 600)


def _rounded(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def mb(n: float) -> float:
    """Bytes in MB, to 0.1."""
    return round(n / 1e6, 1)


class Sampler:
    """The worker's and Redis's memory and the worker's counters, one sample at a time."""

    def __init__(self, bench: Bench, worker: Any) -> None:
        self.bench, self.worker = bench, worker
        self.redis = redis.Redis.from_url(bench.redis_url)
        self.base, self.batches_base = self._counts()
        self.processed = self.batches = 0

    def _counts(self) -> tuple[int, int]:
        metrics = scrape(self.bench.metrics_port)
        batches = sum(v for name, _, v in metrics.get("churnwatch_batch_events", ())
                      if name.endswith("_count"))
        return processed_count(metrics), int(batches)

    async def poll(self) -> int:
        """Events processed since the start (never less than the last answer)."""
        if self.worker.poll() is not None:
            raise ChurnwatchError("the worker exited during the soak:\n"
                                  + self.bench.worker_log.read_text()[-3000:])
        processed, batches = await asyncio.to_thread(self._counts)
        self.processed = max(self.processed, processed - self.base)
        self.batches = max(self.batches, batches - self.batches_base)
        return self.processed

    async def sample(self, t: float, phase: str, sent: int) -> dict[str, Any]:
        await self.poll()
        pid = self.worker.pid
        return {"t": round(t, 2), "phase": phase, "rss_bytes": rss_bytes(pid),
                "heap_bytes": heap_bytes(pid), "processed": self.processed,
                "batches": self.batches, "sent": sent,
                "redis_used_memory": int(self.redis.info("memory")["used_memory"])}

    def close(self) -> None:
        self.redis.close()


async def warm_up(bench: Bench, sampler: Sampler, producer: EventProducer, feed: Iterator[bytes],
                  backlog: int, expected: int, t0: float, samples: list[dict[str, Any]]) -> int:
    """Send ``feed`` as fast as the worker keeps up, at most ``backlog`` events ahead of it;
    return when it has processed all of it (``expected``: about how many events that is)."""
    task = bench.progress.add_task("warm-up: events processed", total=expected)
    sent, next_sample, done = 0, 0.0, False
    last_progress, last_processed = time.perf_counter(), -1
    while True:
        now = time.perf_counter()
        processed = await sampler.poll()
        if processed != last_processed:
            last_progress, last_processed = now, processed
        elif now - last_progress > WARMUP_STALL_S:
            raise ChurnwatchError(f"the worker processed nothing for {WARMUP_STALL_S:.0f} s in "
                                  f"the warm-up ({processed:,} of {sent:,} sent)")
        if not done and (room := backlog - (sent - processed)) > 0:
            chunk = list(itertools.islice(feed, room))
            done = len(chunk) < room
            if chunk:
                sent += await producer.send_lines(chunk)
        if now - t0 >= next_sample:
            samples.append(await sampler.sample(now - t0, "warmup", sent))
            next_sample += SAMPLE_S
        bench.progress.update(task, completed=processed)
        if done and processed >= sent:
            return sent
        await asyncio.sleep(WARMUP_TICK_S)


async def soak(bench: Bench, worker: Any, rate: float, seconds: float, seed: int,
               shape: Plan) -> list[dict[str, Any]]:
    """Both phases' samples; ``t`` is seconds since the warm-up's first event."""
    sim = Simulation(SimConfig(
        subscribers=shape.subscribers, days=shape.warmup_days + shape.measured_days, seed=seed,
        churn_rate=0.08, duplicate_rate=0.01, invalid_rate=0.002, out_of_order_rate=0.01))
    start_ms = int(sim.cfg.start.timestamp() * 1000)
    warm, rest = split_at(sim.events(), start_ms + shape.warmup_days * DAY_MS)
    await wait_for_group(bench.bootstrap, bench.app_id, worker)
    sampler = Sampler(bench, worker)
    samples: list[dict[str, Any]] = []
    async with EventProducer(bench.bootstrap, EVENTS_TOPIC, bench.opts.partitions,
                             bench.opts.per_message) as producer:
        t0 = time.perf_counter()
        expected = int(shape.subscribers * shape.warmup_days * EVENTS_PER_SUBSCRIBER_DAY)
        sent = await warm_up(bench, sampler, producer, map(_encode, warm),
                             shape.warmup_backlog, expected, t0, samples)
        feed = map(_encode, rest)
        task = bench.progress.add_task(f"soak at {report.si(rate)} ev/s: seconds",
                                       total=seconds)
        t1 = time.perf_counter()
        samples.append(await sampler.sample(t1 - t0, "measured", sent))
        base, next_sample = sent, SAMPLE_S
        while (elapsed := time.perf_counter() - t1) < seconds:
            due = int(rate * elapsed) - (sent - base)
            if due > 0:
                chunk = list(itertools.islice(feed, due))
                if not chunk:
                    raise ChurnwatchError("the simulated feed ran out before the soak ended")
                sent += await producer.send_lines(chunk)
            if elapsed >= next_sample:
                samples.append(await sampler.sample(elapsed + t1 - t0, "measured", sent))
                next_sample += SAMPLE_S
                bench.progress.update(task, completed=elapsed)
            await asyncio.sleep(TICK_S)
    sampler.close()
    return samples


def summarise(samples: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """The measured phase's figures (the warm-up's only as context)."""
    measured = [s for s in samples if s["phase"] == "measured"]
    warm = [s for s in samples if s["phase"] == "warmup"]
    if len(measured) < 2:
        raise ChurnwatchError("the soak has fewer than 2 samples in its measured phase")
    first, last = measured[0], measured[-1]
    t_first, span = first["t"], last["t"] - first["t"]
    thirds = [[s for s in measured if k * span / 3 <= s["t"] - t_first <= (k + 1) * span / 3]
              for k in range(3)]
    batches = last["batches"] - first["batches"]
    return {
        "offered_events_per_s": rate, "seconds": round(span, 1), "samples": len(measured),
        "warmup_seconds": round(t_first, 1), "warmup_events": int(first["sent"]),
        "warmup_rss_mb_max": mb(max(s["rss_bytes"] for s in warm)) if warm else None,
        "events_sent": int(last["sent"] - first["sent"]),
        "events_processed": int(last["processed"] - first["processed"]),
        "mean_events_per_batch": (round((last["processed"] - first["processed"]) / batches, 1)
                                  if batches else None),
        "max_backlog": int(max(s["sent"] - s["processed"] for s in measured)),
        "rss_mb_after_warmup": mb(first["rss_bytes"]), "rss_mb_end": mb(last["rss_bytes"]),
        "rss_mb_max": mb(max(s["rss_bytes"] for s in measured)),
        "rss_slope_mb_per_10min_after_warmup": _rounded(slope_mb_per_10min(measured)),
        "rss_slope_mb_per_10min_by_thirds": [_rounded(slope_mb_per_10min(t)) for t in thirds],
        "heap_mb_after_warmup": mb(first["heap_bytes"]), "heap_mb_end": mb(last["heap_bytes"]),
        "redis_mb_after_warmup": mb(first["redis_used_memory"]),
        "redis_mb_end": mb(last["redis_used_memory"]),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="the measured phase's length")
    p.add_argument("--rate", type=float, default=5000.0, help="offered events/s")
    p.add_argument("--warmup-days", type=int, default=WARMUP_DAYS,
                   help=f"simulated days sent before measuring (default {WARMUP_DAYS}: the "
                   f"longest state window, {LONGEST_WINDOW_DAYS} days, + {MARGIN_DAYS})")
    p.add_argument("--measured-days", type=int, default=MEASURED_DAYS,
                   help="simulated days the measured phase's events come from")
    p.add_argument("--warmup-backlog", type=int, default=WARMUP_BACKLOG,
                   help="events the warm-up may send ahead of the worker (bounds its batches)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    a = p.parse_args(argv)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    seconds = a.minutes * 60
    shape = plan(a.rate, seconds, a.warmup_days, a.measured_days, a.warmup_backlog)
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                        TimeElapsedColumn(), console=console)
    bench = Bench(Options(seed=a.seed), console, progress)
    with progress:
        try:
            bench.start()
            worker = bench.start_worker()
            samples = asyncio.run(soak(bench, worker, a.rate, seconds, a.seed, shape))
            stop_process(worker)
        finally:
            bench.close()
    result = {"benchmark": "soak", "created": report.utc_now(),
              "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
              "plan": {"warmup_days": shape.warmup_days, "measured_days": shape.measured_days,
                       "subscribers": shape.subscribers, "minutes": a.minutes,
                       "warmup_backlog": shape.warmup_backlog},
              "summary": summarise(samples, a.rate), "samples": samples}
    path = report.write_report("soak", result, a.out_dir)
    s = result["summary"]
    report.print_table(
        f"soak: {a.minutes:g} min at {a.rate:,.0f} events/s offered, after a warm-up of "
        f"{s['warmup_events']:,} events ({shape.warmup_days} simulated days, "
        f"{shape.subscribers:,} subscribers)",
        ["events sent", "processed", "RSS after warm-up MB", "RSS end MB", "RSS max MB",
         "RSS slope MB/10 min (by thirds)", "main heap MB", "Redis MB"],
        [[f"{s['events_sent']:,}", f"{s['events_processed']:,}", s["rss_mb_after_warmup"],
          s["rss_mb_end"], s["rss_mb_max"],
          f"{s['rss_slope_mb_per_10min_after_warmup']} {s['rss_slope_mb_per_10min_by_thirds']}",
          f"{s['heap_mb_after_warmup']} → {s['heap_mb_end']}",
          f"{s['redis_mb_after_warmup']} → {s['redis_mb_end']}"]])
    report.note(f"report: {path}")
    result["report_path"] = str(path)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
