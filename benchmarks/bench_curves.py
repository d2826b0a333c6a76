"""Scaling curves of the end-to-end engine: events/s against subscribers, events per Kafka
message (the batching a producer does) and partitions, each point a fresh broker, redis-server and worker on the same simulator feed.

    churnwatch bench-curves [--quick] [--out-dir DIR]
    python -m benchmarks.bench_curves [--quick] [--out-dir DIR]

Every point runs the throughput phase of ``benchmarks.bench_e2e`` (first produced event to
every offset committed, and to every event counted on /metrics). Subscriber points keep the
feed near the same size by simulating fewer days for more subscribers, so the curve shows the
cost of a larger key space and more first-seen subscribers, not of a longer feed. The report
(JSON) is written with a markdown summary and PNG plots next to it (``benchmarks.summary``).
Worker counts are not a curve here: several workers on this 2-core machine share the cores
with the broker and Redis (see the cluster benchmark, ``--workers``, where it exists).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import report, summary
from benchmarks.bench_e2e import CODE_PATHS, Bench, Options, _encode, stop_process
from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev.simulate import SimConfig, Simulation


@dataclass(frozen=True)
class Point:
    """One measured configuration."""

    curve: str
    subscribers: int
    days: int
    per_message: int = 500
    partitions: int = 4


def plan(quick: bool) -> list[Point]:
    """The points of each curve; ``quick`` keeps the whole run to a few minutes."""
    if quick:
        subs = [Point("subscribers", 3_000, 20), Point("subscribers", 30_000, 2)]
        batches = [Point("per_message", 3_000, 20, per_message=b) for b in (10, 500)]
        parts = [Point("partitions", 3_000, 20, partitions=p) for p in (1, 8)]
    else:
        subs = [Point("subscribers", 10_000, 20), Point("subscribers", 100_000, 2),
                Point("subscribers", 300_000, 1), Point("subscribers", 1_000_000, 1)]
        batches = [Point("per_message", 10_000, 20, per_message=b) for b in (1, 10, 100, 500)]
        parts = [Point("partitions", 10_000, 20, partitions=p) for p in (1, 4, 12, 24)]
    return subs + batches + parts


def measure(point: Point, base: Options, console: Console, progress: Progress) -> dict[str, Any]:
    """Throughput of one point on fresh servers."""
    sim = Simulation(SimConfig(subscribers=point.subscribers, days=point.days, seed=base.seed,
                               churn_rate=0.08, duplicate_rate=0.01, invalid_rate=0.002,
                               out_of_order_rate=0.01))
    lines = [_encode(e) for e in sim.events()]
    opts = replace(base, subscribers=point.subscribers, days=point.days,
                   partitions=point.partitions, per_message=point.per_message)
    bench = Bench(opts, console, progress)
    try:
        bench.start()
        worker = bench.start_worker()
        result = asyncio.run(bench.throughput(worker, lines))
        stop_process(worker)
    finally:
        bench.close()
    return {"point": point.__dict__, "events": len(lines),
            "events_per_s": result["events_per_s"],
            "events_per_s_processed": result["events_per_s_processed"],
            "mean_events_per_batch": result["mean_events_per_batch"],
            "stages": result["stages"]}


def run(quick: bool, seed: int = 7) -> dict[str, Any]:
    console = Console(stderr=True)
    base = Options(quick=quick, seed=seed, timeout_s=600.0)
    points = plan(quick)
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                        TimeElapsedColumn(), console=console, transient=True)
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with progress:
        overall = progress.add_task("curves: points", total=len(points))
        for point in points:
            progress.console.print(f"[bold]{point.curve}[/]: {point.subscribers:,} subscribers "
                                   f"x {point.days} d, {point.per_message} events/message, "
                                   f"{point.partitions} partitions")
            try:
                results.append(measure(point, base, console, progress))
            except ChurnwatchError as exc:  # one failed point must not lose the others
                progress.console.print(f"[red]point failed:[/] {str(exc)[:300]}")
                failed.append({"point": point.__dict__, "error": str(exc)[-3000:]})
            progress.advance(overall)
    return {"benchmark": "curves", "created": report.utc_now(), "quick": quick,
            "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
            "points": results, "failed_points": failed}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_curves", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="two points per curve, small feeds")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    a = p.parse_args(argv)
    result = run(a.quick, a.seed)
    path = report.write_report("curves", result, a.out_dir)
    md, pngs = summary.write_curves(result, path)
    for curve, rows in summary.curve_rows(result).items():
        report.print_table(f"events/s by {curve}", [curve, "events", "events/s (committed)",
                                                    "events/s (processed)", "events/batch"],
                           [[f"{x:,}", f"{r['events']:,}", f"{r['events_per_s']:,}",
                             f"{r['events_per_s_processed'] or 0:,}",
                             r["mean_events_per_batch"]] for x, r in rows])
    for f in result["failed_points"]:
        report.note(f"failed: {f['point']} (see the report)")
    report.note(f"report: {path}\nsummary: {md}\nplots: {', '.join(str(p) for p in pngs)}")
    result["report_path"] = str(path)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
