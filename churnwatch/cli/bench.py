"""The benchmark commands (``bench``, ``bench-curves``, ``bench-soak``): each runs a module of
``benchmarks/`` in a child process. The benchmarks live in the source tree, not in the
installed package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from churnwatch.cli.common import JsonOpt, fail
from churnwatch.core.errors import ChurnwatchError

# what benchmarks/ imports beyond churnwatch's own dependencies: the [bench] extra
BENCH_MODULES = ("matplotlib", "confluent_kafka")


def run_benchmark(module: str, argv: list[str]) -> None:
    """Run ``python -m benchmarks.<module>`` in a child process and exit with its status.

    The benchmarks live in the source tree, not in the installed package: the bench
    commands work from a checkout (the working directory holding ``benchmarks/``), with the
    [bench] extra (plots, a standard producer) and [embedded] (the local broker and Redis)."""
    missing = [m for m in BENCH_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(ChurnwatchError(
            f"the bench commands need the [bench] extra ({', '.join(missing)} not installed). "
            "Fix: `pip install 'churnwatch[embedded,bench]'` (./run installs every extra)"))
    if not (Path.cwd() / "benchmarks" / f"{module}.py").is_file():
        raise fail(ChurnwatchError(
            f"benchmarks/{module}.py not found under {Path.cwd()}: the bench commands run "
            "from a churnwatch source checkout (cd into it and run the command again)"))
    rc = subprocess.call([sys.executable, "-m", f"benchmarks.{module}", *argv])
    if rc:
        raise typer.Exit(rc)


def register(app: typer.Typer) -> None:
    """Add the benchmark commands to ``app``."""

    @app.command("bench-curves")
    def bench_curves(
        quick: Annotated[bool, typer.Option("--quick", help="two points per curve, small feeds "
                                            "(a few minutes)")] = False,
    ) -> None:
        """Scaling curves: end-to-end events/s by subscribers, events per Kafka message and
        partitions; writes a
        JSON report, a markdown summary and PNG plots under reports/."""
        run_benchmark("bench_curves", ["--quick"] if quick else [])


    @app.command("bench-soak")
    def bench_soak(
        minutes: Annotated[float, typer.Option(help="the measured phase's length")] = 10.0,
        rate: Annotated[float, typer.Option(help="offered events/s")] = 5000.0,
    ) -> None:
        """Soak one worker at a fixed offered load, after a warm-up over the longest state
        window, and report whether its memory grows (RSS samples and slope over the measured
        phase; JSON report under reports/; more options: python -m benchmarks.bench_soak -h)."""
        run_benchmark("bench_soak", ["--minutes", str(minutes), "--rate", str(rate)])


    @app.command()
    def bench(
        scenario: Annotated[str, typer.Option(
            help="e2e: churnwatch's packed feed, throughput and latency, naive baseline; intake: "
                 "a standard producer's topic (confluent-kafka, lz4, one event per message) drained "
                 "by churnwatch, the naive design and Quix Streams, and the packed feed "
                 "(python -m benchmarks.bench_intake -h for all its options)")] = "e2e",
        size: Annotated[str, typer.Option(help="intake: small (2,000 subscribers x 60 days) or "
                                          "large (10,000 x 150, ~3M events)")] = "small",
        compression: Annotated[str, typer.Option(help="intake: the producer's compression.type "
                                                 "(none, gzip, snappy, lz4, zstd)")] = "lz4",
        repeat: Annotated[int, typer.Option(help="intake: whole runs; medians over them")] = 1,
        quick: Annotated[bool, typer.Option("--quick", help="~300 subscribers x 60 days, short "
                                            "latency window, naive capped at 25 s (< 2 minutes)")]
        = False,
        subscribers: Annotated[Optional[int], typer.Option(help="simulated population "
                                                           "(default 1000; quick 300)")] = None,
        days: Annotated[Optional[int], typer.Option(help="days simulated (default 150; quick 60)")]
        = None,
        latency_subscribers: Annotated[Optional[int], typer.Option(
            help="subscribers of the latency feed (default: the throughput feed's)")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """End-to-end benchmark on a local broker and Redis: churnwatch's sustained events/s and
        event-to-alert latency, and the naive per-event Faust design on the same feed (ratio);
        --scenario intake: the same designs and Quix Streams draining a topic written one event
        per message by a standard producer."""
        if scenario == "intake":
            argv = ["--size", size, "--compression", compression, "--repeat", str(repeat)]
            if subscribers is not None:
                argv += ["--subscribers", str(subscribers)]
            if days is not None:
                argv += ["--days", str(days)]
            if json_out:
                argv.append("--json")
            run_benchmark("bench_intake", argv)
            return
        if scenario != "e2e":
            raise fail(ChurnwatchError(f"--scenario must be e2e or intake, not {scenario!r}"))
        argv = ["--quick"] if quick else []
        if subscribers is not None:
            argv += ["--subscribers", str(subscribers)]
        if days is not None:
            argv += ["--days", str(days)]
        if latency_subscribers is not None:
            argv += ["--latency-subscribers", str(latency_subscribers)]
        if json_out:
            argv.append("--json")
        run_benchmark("bench_e2e", argv)
