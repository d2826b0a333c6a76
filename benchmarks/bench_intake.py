"""Intake benchmark (`churnwatch bench --scenario intake`): a standard producer's topic, drained.

    churnwatch bench --scenario intake [--size small|large] [--compression lz4] [--repeat N]
    python -m benchmarks.bench_intake [--size small|large] [--subscribers N] [--days D]
        [--compression none|gzip|snappy|lz4|zstd] [--designs churnwatch,naive,quix,packed]
        [--repeat N] [--max-s S] [--stall-s S] [--quix-python PATH] [--out-dir DIR] [--json]

What an operator's systems write is not churnwatch's packed format: a third-party producer
(here confluent-kafka, i.e. librdkafka, ``compression.type=lz4``, its default partitioner
``consistent_random`` = CRC32 of the key) writes ONE JSON event per message, keyed by the
subscriber id (canonical form, so a subscriber's events share a partition). One run starts
its own embedded broker and redis-server, writes the whole simulator feed (faults on, as in
``churnwatch bench``) to ``churn.events`` *before* any consumer starts (a full backlog), then
drains that one topic with, one after the other, each in its own process and consumer group:

1. **churnwatch**: a real ``churnwatch worker`` (whatever worker code is on the import path);
   its ``/metrics`` give the events processed and ``churnwatch_batch_events`` (mean batch);
2. **naive**: ``benchmarks.naive_faust`` (plain Faust agent, one Redis round trip per event,
   the 2-of-3 rule in Python);
3. **quix**: ``benchmarks/quix_rule.py``, a Quix Streams ``Application`` (default settings,
   at-least-once) running the 2-of-3 rule with per-subscriber RocksDB state. It does much
   less than churnwatch (see that file): its rate is not like for like. Quix Streams 3.28
   pins versions that conflict with churnwatch's, so it runs from its own virtualenv, found
   as ``--quix-python``, else ``$CHURNWATCH_QUIX_PYTHON``, else
   ``/tmp/churnwatch-quix-venv/bin/python`` (``benchmarks/setup_quix_venv.sh`` makes it); if
   none exists the quix design is reported as skipped;
4. **packed** (comparison): a fresh broker and Redis, the same feed written by churnwatch's own
   producer (``churnwatch replay``, 500 events per message, uncompressed), then a worker.

Each design is timed from its group join (the process has joined its consumer group and been
assigned the partitions; the start-up before that is reported as ``startup_s``) to

- every offset of ``churn.events`` committed by its group (``events_per_s``, the headline: lag
  0 as a client sees it; commit timers add up to ~3 s for Faust, ~5 s for Quix; for
  churnwatch, whose worker may forward events that arrive away from their subscriber's home
  partition through an internal topic, also every event processed), and
- every message processed, by its own count (``events_per_s_processed``; churnwatch's
  /metrics, the baselines' stats files), also from the first message processed
  (``events_per_s_from_first``).

``events_per_s_from_spawn`` counts the start-up too (process start to all committed): on the
embedded broker a librdkafka or Faust group join takes up to ~25 s, so on small feeds it
mostly measures that.

A consumer that exits (a crash, e.g. a codec its Kafka client cannot decompress), makes no
progress for ``--stall-s`` seconds, or hits ``--max-s`` ends its design with that outcome and
the log lines that explain it; the other designs still run. Ratios churnwatch/naive,
churnwatch/quix and packed/churnwatch are of medians over ``--repeat`` runs. Nothing is
compared with targets here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import msgspec
import orjson

from benchmarks import paced_latency, report
from benchmarks.bench_e2e import (
    CommitWatch,
    counts,
    histograms,
    processed_count,
    scrape,
    stop_process,
)
from benchmarks.standard_producer import COMPRESSIONS, PARTITIONERS, produce
from churnwatch.core.errors import ChurnwatchError
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_members
from churnwatch.infra.kafka.topics import create_topics

SIZES = {"tiny": (60, 40), "small": (2000, 60), "large": (10_000, 150)}
DESIGNS = ("churnwatch", "naive", "quix", "packed")
DEFAULT_QUIX_PYTHON = "/tmp/churnwatch-quix-venv/bin/python"
QUIX_PYTHON_ENV = "CHURNWATCH_QUIX_PYTHON"
CODE_PATHS = ("streams", "features", "rules", "alerting", "churnwatch", "benchmarks/bench_intake.py",
              "benchmarks/naive_faust.py", "benchmarks/quix_rule.py",
              "benchmarks/standard_producer.py")
# log lines worth showing when a consumer dies or stalls (codec errors first of all)
_TELLING = re.compile(r"codec|cramjam|lz4|zstd|snappy|Traceback|Error|error|CRITICAL|exited",
                      re.IGNORECASE)
_CODEC_ERROR = re.compile(r"UnsupportedCodecError[^\n]*|[^\n]*(?:compression )?codec not "
                          r"(?:found|available|supported)[^\n]*", re.IGNORECASE)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Options:
    size: str = "small"
    subscribers: int = 2000
    days: int = 60
    seed: int = 7
    partitions: int = 4
    compression: str = "lz4"
    partitioner: str = "consistent_random"
    designs: tuple[str, ...] = DESIGNS
    repeat: int = 1
    max_s: float = 300.0
    stall_s: float = 60.0
    join_timeout_s: float = 120.0
    quix_python: str | None = None
    without_cramjam: bool = False
    latency_s: float = 20.0
    latency_warmup_s: float = 5.0
    latency_rate: float | None = None
    out_dir: str | None = None
    json_output: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="bench_intake", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="small: 2,000 subscribers x 60 days (~250k events); large: 10,000 x "
                        "150 (~3.1M); tiny: 60 x 40 (tests)")
    p.add_argument("--subscribers", type=int, default=None, help="overrides --size")
    p.add_argument("--days", type=int, default=None, help="overrides --size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--compression", choices=COMPRESSIONS, default="lz4")
    p.add_argument("--partitioner", choices=PARTITIONERS, default="consistent_random")
    p.add_argument("--designs", default=",".join(DESIGNS),
                   help=f"comma-separated subset of {','.join(DESIGNS)}")
    p.add_argument("--repeat", type=int, default=1, help="whole runs (fresh broker and Redis "
                   "each); medians over them")
    p.add_argument("--max-s", type=float, default=None, help="cap per design from its group "
                   "join (default: small 300, large 1800); rates then cover what it had done")
    p.add_argument("--stall-s", type=float, default=60.0, help="no progress for this long "
                   "after the group join: the design is reported as stalled")
    p.add_argument("--quix-python", default=None, help="python of the Quix Streams "
                   f"virtualenv (default ${QUIX_PYTHON_ENV}, else {DEFAULT_QUIX_PYTHON})")
    p.add_argument("--without-cramjam", action="store_true", help="hide the cramjam package "
                   "from the churnwatch worker and the naive app (an install without it: "
                   "aiokafka then has no snappy/lz4/zstd codec)")
    p.add_argument("--latency-s", type=float, default=20.0, help="after the churnwatch worker "
                   "drained the backlog, offer it half its measured rate for this long, one "
                   "event per message, and report the alerts' detection latency (0: skip)")
    p.add_argument("--latency-warmup-s", type=float, default=5.0, help="the same load offered "
                   "first for this long, its alerts reported apart (the restarted worker's start)")
    p.add_argument("--latency-rate", type=float, default=None, help="events/s offered in the "
                   "latency phase (default: half the drained rate)")
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--json", dest="json_output", action="store_true",
                   help="print the report as JSON on stdout")
    a = p.parse_args(argv)
    designs = tuple(d.strip() for d in a.designs.split(",") if d.strip())
    if bad := set(designs) - set(DESIGNS):
        p.error(f"unknown designs {sorted(bad)}; choose among {','.join(DESIGNS)}")
    subs, days = SIZES[a.size]
    return Options(size=a.size, subscribers=a.subscribers or subs, days=a.days or days,
                   seed=a.seed, partitions=a.partitions, compression=a.compression,
                   partitioner=a.partitioner, designs=designs, repeat=max(1, a.repeat),
                   latency_s=a.latency_s, latency_warmup_s=a.latency_warmup_s,
                   latency_rate=a.latency_rate,
                   max_s=a.max_s if a.max_s is not None else (1800.0 if a.size == "large"
                                                              else 300.0),
                   stall_s=a.stall_s, quix_python=a.quix_python,
                   without_cramjam=a.without_cramjam, out_dir=a.out_dir,
                   json_output=a.json_output)


def quix_python(opts: Options) -> str | None:
    """The Quix virtualenv's python: --quix-python, $CHURNWATCH_QUIX_PYTHON, the default path."""
    for candidate in (opts.quix_python, os.environ.get(QUIX_PYTHON_ENV), DEFAULT_QUIX_PYTHON):
        if candidate:
            return candidate if os.access(candidate, os.X_OK) else None
    return None


def log_excerpt(path: Path, lines: int = 12) -> list[str]:
    """The telling lines of a consumer's log (codec errors, tracebacks), else its tail."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    telling = [line[:300] for line in text if _TELLING.search(line)]
    return (telling[:lines // 2] + telling[-(lines // 2):] if len(telling) > lines
            else telling) or [line[:300] for line in text[-lines:]]


def crash_cause(path: Path) -> str | None:
    """The first codec error in a consumer's log (a client without the codec's library)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    found = _CODEC_ERROR.search(text)
    return found.group(0).strip() if found else None


def read_stats(path: Path) -> dict[str, Any]:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}


async def group_joined(bootstrap: str, group: str, admin: Any) -> bool:
    groups = await admin.describe_consumer_groups([group])
    return bool(groups and groups[0].groups and groups[0].groups[0][2] == "Stable"
                and groups[0].groups[0][5])


@dataclass
class Consumer:
    """One design's process and how to read its progress."""

    name: str
    group: str
    proc: subprocess.Popen
    log: Path
    processed: Callable[[], int]  # messages it has processed so far (its own count)
    spawned: float  # time.perf_counter() at spawn


async def drain(c: Consumer, bootstrap: str, ends: dict[int, int], opts: Options,
                progress: Callable[[int], None] | None = None,
                events: int | None = None) -> dict[str, Any]:
    """Wait for ``c`` to join, then until its group committed ``ends`` (or it crashed, stalled
    or hit the cap); its rates and outcome. ``events``: how many events the messages up to
    ``ends`` hold (default one per message), what ``c.processed()`` counts to."""
    from aiokafka.admin import AIOKafkaAdminClient

    messages = sum(ends.values())
    total = events if events is not None else messages
    out: dict[str, Any] = {"events": total, "messages": messages, "group": c.group}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.perf_counter() + opts.join_timeout_s
        while not await group_joined(bootstrap, c.group, admin):
            if c.proc.poll() is not None:
                return {**out, "outcome": "crashed", "exit_code": c.proc.returncode,
                        "phase": "startup", "cause": crash_cause(c.log),
                        "log": log_excerpt(c.log)}
            if time.perf_counter() > deadline:
                return {**out, "outcome": "stalled", "phase": "startup",
                        "detail": f"no group join within {opts.join_timeout_s:.0f} s",
                        "log": log_excerpt(c.log)}
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    t0 = time.perf_counter()
    out["startup_s"] = round(t0 - c.spawned, 3)
    first_s = processed_s = committed_s = None
    last = (0.0, 0, 0)  # (s since join, processed, committed) at the last progress
    outcome = "complete"
    scraped_at, done = -1.0, 0
    async with CommitWatch(bootstrap, c.group, EVENTS_TOPIC) as watch:
        while True:
            now = time.perf_counter() - t0
            committed = await watch.committed()
            # the consumer's own count (churnwatch: its /metrics) once a second, every turn
            # near the end: a scrape costs the worker CPU (10 a second took ~3 % of its
            # samples while it drained), and a Prometheus server scrapes far less often
            if (now - scraped_at >= 1.0 or committed >= 0.9 * messages
                    or done >= 0.9 * total):
                done, scraped_at = c.processed(), now
            if progress:
                progress(done)
            if (done or committed) and first_s is None:
                first_s = now
            if done >= total and processed_s is None:
                processed_s = now
            if done > last[1] or committed > last[2]:
                last = (now, done, committed)
            if committed >= messages and (c.name != "churnwatch" or done >= total):
                committed_s = now  # (churnwatch: forwarded events are processed after that)
                break
            if c.proc.poll() is not None:
                outcome = "crashed"
                out["exit_code"] = c.proc.returncode
                break
            if now - last[0] > opts.stall_s:
                outcome = "stalled"
                out["detail"] = f"no progress for {opts.stall_s:.0f} s"
                break
            if now > opts.max_s:
                outcome = "capped"
                break
            await asyncio.sleep(0.1)
    done = max(c.processed(), last[1])
    out.update({
        "outcome": outcome,
        "events_processed": done,
        "messages_committed": last[2] if committed_s is None else messages,
        "events_committed": total if committed_s is not None else
        round(total * last[2] / messages) if messages else 0,
        "first_processed_s": round(first_s, 3) if first_s is not None else None,
        "elapsed_processed_s": round(processed_s, 3) if processed_s is not None else None,
        "elapsed_committed_s": round(committed_s, 3) if committed_s is not None else None,
    })
    # rates: the whole feed if it finished, else what it had done by its last progress
    c_time, c_events = (committed_s, total) if committed_s is not None else (
        last[0], total * last[2] / messages if messages else 0)
    p_time = processed_s if processed_s is not None else last[0]
    out["events_per_s"] = round(c_events / c_time) if c_time and c_events else None
    out["events_per_s_processed"] = round(min(done, total) / p_time) if p_time and done else None
    out["events_per_s_from_spawn"] = (round(c_events / (c_time + out["startup_s"]))
                                      if c_time and c_events else None)
    out["events_per_s_from_first"] = (
        round(min(done, total) / (p_time - first_s))
        if first_s is not None and p_time and p_time > first_s else None)
    if outcome in ("crashed", "stalled"):
        out.update(cause=crash_cause(c.log), log=log_excerpt(c.log))
    return out


class Run:
    """One run: its own broker, Redis and working directory."""

    def __init__(self, opts: Options, lines: list[bytes], workdir: Path, index: int,
                 sim: SimConfig | None = None) -> None:
        self.opts, self.lines, self.index = opts, lines, index
        self.sim = sim or SimConfig(subscribers=opts.subscribers, days=opts.days, seed=opts.seed)
        self.stack = ExitStack()
        self.workdir = workdir / f"run{index}"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def python_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` for a churnwatch-side Python child: its temporary files in the run's
        directory, and with ``--without-cramjam`` a module
        named cramjam that fails to import comes first on its path (aiokafka then reports
        snappy, lz4 and zstd as unavailable, as on an install without cramjam)."""
        env["TMPDIR"] = str(self.workdir)  # Faust's data dirs go there, removed with it
        if not self.opts.without_cramjam:
            return env
        shim = self.workdir / "no-cramjam"
        shim.mkdir(exist_ok=True)
        (shim / "cramjam.py").write_text(
            'raise ImportError("cramjam hidden by bench_intake --without-cramjam")\n')
        env["PYTHONPATH"] = os.pathsep.join(
            [str(shim), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def servers(self) -> tuple[str, str]:
        broker = self.stack.enter_context(EmbeddedBroker())
        redis = self.stack.enter_context(EmbeddedRedis())
        return broker.bootstrap, redis.url

    def topics(self, bootstrap: str) -> None:
        """churn.events with explicit retention settings (Tansu reports no broker defaults,
        which Quix needs to derive its changelog topics' config), then the worker's others."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics([NewTopic(EVENTS_TOPIC, self.opts.partitions, 1, config={
            "retention.ms": "-1", "retention.bytes": "-1"})])
        for f in futures.values():
            f.result(30)
        asyncio.run(create_topics(bootstrap, {t: self.opts.partitions for t in (
            EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))

    # ---------------------------------------------------------------- consumers
    def worker(self, bootstrap: str, redis_url: str, app_id: str) -> tuple[Consumer, int]:
        port = free_port()
        env = dict(os.environ, CHURNWATCH_BROKER=f"kafka://{bootstrap}",
                   CHURNWATCH_REDIS_URL=redis_url,
                   CHURNWATCH_ALERTS_JSONL=str(self.workdir / f"{app_id}-alerts.jsonl"),
                   CHURNWATCH_APP_ID=app_id, CHURNWATCH_METRICS_PORT=str(port),
                   CHURNWATCH_PARTITIONS=str(self.opts.partitions),
                   CHURNWATCH_WEB_ENABLED="false")
        for key in ("CHURNWATCH_CONFIG", "CHURNWATCH_WEBHOOK_URL"):
            env.pop(key, None)
        log = self.workdir / f"{app_id}.log"
        spawned = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"],
                                env=self.python_env(env),
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        last = [0]

        def processed() -> int:  # keep the last good scrape if /metrics does not answer
            m = scrape(port)
            if m:
                last[0] = processed_count(m)
            return last[0]

        return Consumer("churnwatch", app_id, proc, log, processed, spawned), port

    def naive(self, bootstrap: str, redis_url: str) -> Consumer:
        group = f"churnwatch-bench-intake-naive-{self.index}"
        stats = self.workdir / "naive-stats.json"
        env = dict(os.environ, NAIVE_BROKER=f"kafka://{bootstrap}", NAIVE_REDIS_URL=redis_url,
                   NAIVE_TOPIC=EVENTS_TOPIC, NAIVE_STATS=str(stats), NAIVE_APP_ID=group,
                   NAIVE_PARTITIONS=str(self.opts.partitions))
        log = self.workdir / "naive.log"
        spawned = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.naive_faust"],
                                env=self.python_env(env),
                                cwd=report.REPO_ROOT, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        return Consumer("naive", group, proc, log,
                        lambda: int(read_stats(stats).get("processed", 0)), spawned)

    def quix(self, bootstrap: str, python: str, expected: int) -> Consumer:
        group = f"churnwatch-bench-intake-quix-{self.index}"
        stats = self.workdir / "quix-stats.json"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(QUIX_BROKER=bootstrap, QUIX_TOPIC=EVENTS_TOPIC, QUIX_GROUP=group,
                   QUIX_STATE_DIR=str(self.workdir / "quix-state"), QUIX_STATS=str(stats),
                   QUIX_EXPECTED=str(expected))
        log = self.workdir / "quix.log"
        spawned = time.perf_counter()
        proc = subprocess.Popen([python, str(report.REPO_ROOT / "benchmarks" / "quix_rule.py")],
                                env=env, cwd=self.workdir, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        return Consumer("quix", group, proc, log,
                        lambda: int(read_stats(stats).get("processed", 0)), spawned)

    # ---------------------------------------------------------------- phases
    def standard(self, bar: Callable[[str], Callable[[int], None]]) -> dict[str, Any]:
        """Designs 1-3 on one topic written by the standard producer."""
        import confluent_kafka

        opts = self.opts
        bootstrap, redis_url = self.servers()
        self.topics(bootstrap)
        delivery = produce(bootstrap, EVENTS_TOPIC, self.lines, compression=opts.compression,
                           partitioner=opts.partitioner, key="normalised",
                           progress=bar("produce (confluent-kafka, 1 event/message)"))
        result: dict[str, Any] = {"producer": {
            "library": f"confluent-kafka {confluent_kafka.__version__}, librdkafka "
                       f"{confluent_kafka.libversion()[0]}",
            "compression": opts.compression, "partitioner": opts.partitioner,
            "key": "subscriber_id, normalised (+digits); invalid ids unkeyed",
            "messages": delivery.messages, "seconds": round(delivery.seconds, 3),
            "messages_per_s": round(delivery.messages / delivery.seconds)
            if delivery.seconds else None,
            "per_partition": {str(p): n for p, n in sorted(delivery.per_partition.items())}}}
        ends = delivery.ends
        for design in ("churnwatch", "naive", "quix"):
            if design not in opts.designs:
                continue
            if design == "churnwatch":
                app_id = f"churnwatch-bench-intake-{self.index}"
                c, port = self.worker(bootstrap, redis_url, app_id)
                r = asyncio.run(drain(c, bootstrap, ends, opts, bar("churnwatch worker")))
                r.update(worker_metrics(port))
            elif design == "naive":
                c = self.naive(bootstrap, redis_url)
                r = asyncio.run(drain(c, bootstrap, ends, opts, bar("naive Faust")))
                r.update(stats_extra(read_stats(self.workdir / "naive-stats.json")))
            else:
                python = quix_python(opts)
                if python is None:
                    result[design] = {"outcome": "skipped", "detail": (
                        f"no Quix virtualenv python (--quix-python, ${QUIX_PYTHON_ENV}, or "
                        f"{DEFAULT_QUIX_PYTHON}); make it with benchmarks/setup_quix_venv.sh")}
                    continue
                c = self.quix(bootstrap, python, delivery.messages)
                r = asyncio.run(drain(c, bootstrap, ends, opts, bar("Quix Streams")))
                r.update(stats_extra(read_stats(self.workdir / "quix-stats.json")))
                r["python"] = python
            stop_process(c.proc)
            result[design] = r
        cw = result.get("churnwatch") or {}
        if opts.latency_s > 0 and cw.get("outcome") == "complete":  # after the baselines:
            # they read the topic to its end, and the latency feed would lengthen it
            cw["latency"] = self.latency(bootstrap, redis_url, f"churnwatch-bench-intake-"
                                         f"{self.index}", cw.get("events_per_s_processed")
                                         or cw["events_per_s"])
        return result

    def latency(self, bootstrap: str, redis_url: str, app_id: str, rate: float
                ) -> dict[str, Any]:
        """The worker that drained the backlog, started again (its group resumes at the end),
        at half its measured ``rate``: detection latency with one event per message from the
        standard producer (``benchmarks/paced_latency.py``)."""
        opts = self.opts
        c, _ = self.worker(bootstrap, redis_url, app_id)

        async def joined() -> None:
            deadline = time.monotonic() + opts.join_timeout_s
            while await group_members(bootstrap, app_id) < 1:
                if c.proc.poll() is not None or time.monotonic() > deadline:
                    raise ChurnwatchError("the worker did not rejoin for the latency feed")
                await asyncio.sleep(0.5)

        asyncio.run(joined())
        offered = opts.latency_rate or rate / 2
        lines = paced_latency.continuation(
            self.sim, int(offered * (opts.latency_warmup_s + opts.latency_s) * 1.1))

        async def drained(what: str) -> None:
            async with CommitWatch(bootstrap, app_id, EVENTS_TOPIC) as watch:
                end = await watch.ends()
                deadline = time.monotonic() + 120
                while await watch.committed() < end:
                    if c.proc.poll() is not None or time.monotonic() > deadline:
                        raise ChurnwatchError(f"the worker did not finish the {what}")
                    await asyncio.sleep(0.2)

        def offer(part: list[bytes], seconds: float) -> dict[str, Any]:
            return paced_latency.offer(bootstrap, EVENTS_TOPIC, part, offered, seconds,
                                       compression=opts.compression,
                                       partitioner=opts.partitioner)

        warm = None
        if opts.latency_warmup_s > 0:  # its share of the lines (a small feed may run out)
            split = int(len(lines) * opts.latency_warmup_s
                        / (opts.latency_warmup_s + opts.latency_s))
            warm = offer(lines[:split], opts.latency_warmup_s)
            asyncio.run(drained("latency warm-up"))
            lines = lines[warm["events"]:]
        sent = offer(lines, opts.latency_s)
        asyncio.run(drained("latency feed"))
        time.sleep(1.0)  # the last alerts' records
        stop_process(c.proc)
        return paced_latency.summary(
            sent, paced_latency.alert_latencies(bootstrap, ALERTS_TOPIC, sent["started_ms"]),
            warm, paced_latency.alert_latencies(bootstrap, ALERTS_TOPIC, warm["started_ms"],
                                                warm["ended_ms"]) if warm else None)

    def packed(self, bar: Callable[[str], Callable[[int], None]]) -> dict[str, Any]:
        """Design 4: a fresh broker and Redis, the feed written by `churnwatch replay`."""
        bootstrap, redis_url = self.servers()
        self.topics(bootstrap)
        feed = self.workdir / "feed.ndjson"
        with feed.open("wb") as fh:
            for line in self.lines:
                fh.write(line + b"\n")
        env = dict(os.environ, CHURNWATCH_BROKER=f"kafka://{bootstrap}",
                   CHURNWATCH_PARTITIONS=str(self.opts.partitions))
        env.pop("CHURNWATCH_CONFIG", None)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "churnwatch", "replay", str(feed), "--json"],
                              env=env, capture_output=True, timeout=1800, check=False)
        replay_s = time.perf_counter() - t
        feed.unlink()
        if done.returncode != 0:
            raise ChurnwatchError("churnwatch replay failed:\n"
                                  + done.stderr.decode(errors="replace")[-2000:])

        async def ends() -> dict[int, int]:
            async with CommitWatch(bootstrap, "churnwatch-bench-intake-ends", EVENTS_TOPIC) as w:
                from churnwatch.infra.kafka.offsets import high_watermarks

                return {tp.partition: n for tp, n in
                        (await high_watermarks(w.consumer, EVENTS_TOPIC)).items()}

        offsets = asyncio.run(ends())
        c, port = self.worker(bootstrap, redis_url, f"churnwatch-bench-intake-packed-{self.index}")
        r = asyncio.run(drain(c, bootstrap, offsets, self.opts, bar("packed: churnwatch worker"),
                              events=len(self.lines)))
        r.update(worker_metrics(port), replay_s=round(replay_s, 3),
                 producer="churnwatch replay (500 events/message, murmur2 of the normalised "
                          "id, uncompressed)")
        stop_process(c.proc)
        return r


def worker_metrics(port: int) -> dict[str, Any]:
    m = scrape(port)
    batch = histograms(m, "churnwatch_batch_events").get("all")
    c = counts(m)
    return {
        "counts": c,
        "counts_total": processed_count(m) if m else None,
        "batches": int(batch["count"]) if batch else None,
        "mean_events_per_batch": round(batch["sum"] / batch["count"], 1)
        if batch and batch["count"] else None,
        # events that arrived away from their subscriber's home partition (streams/repartition):
        # forwarded there, or applied where they arrived by the home partition's owner
        "forwarded_events": _total(m, "churnwatch_forwarded_events"),
        "away_applied_events": _total(m, "churnwatch_away_applied_events"),
    }


def _total(m: dict[str, Any], family: str) -> int | None:
    return int(sum(v for name, _, v in m.get(family, ()) if name.endswith("_total"))) if m else None


def stats_extra(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: int(stats[k]) for k in ("alerts", "invalid", "duplicates") if k in stats}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values)) if values else None


def summarise(runs: list[dict[str, Any]], designs: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for d in designs:
        rs = [r[d] for r in runs if d in r]
        rates = [x["events_per_s"] for x in rs if x.get("events_per_s")]
        summary[d] = {
            "outcomes": [x.get("outcome") for x in rs],
            "events_per_s_runs": rates,
            "median_events_per_s": _median(rates),
            "median_events_per_s_processed": _median(
                [x["events_per_s_processed"] for x in rs if x.get("events_per_s_processed")]),
            "median_events_per_batch": (statistics.median(b) if (b := [
                x["mean_events_per_batch"] for x in rs if x.get("mean_events_per_batch")])
                else None),
            "median_alert_latency_p99_ms": _median([
                x["latency"]["alert_latency_ms"]["p99"] for x in rs
                if (x.get("latency") or {}).get("alert_latency_ms", {}).get("p99") is not None]),
            "median_alert_delivery_latency_p99_ms": _median([
                x["latency"]["alert_delivery_latency_ms"]["p99"] for x in rs
                if ((x.get("latency") or {}).get("alert_delivery_latency_ms") or {}).get("p99")
                is not None]),
        }

    def ratio(a: str, b: str) -> float | None:
        x = summary.get(a, {}).get("median_events_per_s")
        y = summary.get(b, {}).get("median_events_per_s")
        return round(x / y, 2) if x and y else None

    summary["ratios"] = {"churnwatch_over_naive": ratio("churnwatch", "naive"),
                         "churnwatch_over_quix": ratio("churnwatch", "quix"),
                         "packed_over_churnwatch": ratio("packed", "churnwatch")}
    summary["ratios_basis"] = "medians of events_per_s (group join to all offsets committed, " \
                              "or to the last progress when not complete)"
    return summary


def run(opts: Options) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    config = SimConfig(subscribers=opts.subscribers, days=opts.days, seed=opts.seed,
                       churn_rate=0.08, duplicate_rate=0.01, invalid_rate=0.002,
                       out_of_order_rate=0.01)
    lines = [_encode(e) for e in Simulation(config).events()]
    result: dict[str, Any] = {
        "benchmark": "intake", "created": report.utc_now(), "options": asdict(opts),
        "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
        "feed": {"subscribers": opts.subscribers, "days": opts.days, "seed": opts.seed,
                 "events": len(lines), "partitions": opts.partitions,
                 "faults": "1 % duplicates, 0.2 % invalid, 1 % out of order"},
        "notes": [
            ("the feed is written before each consumer starts (full backlog); designs run one "
             "after the other on the same topic, each with its own consumer group"),
            ("quix runs only the 2-of-3 rule (3 indicators, no dedup, no lateness policy, no "
             "alerts published): it does much less than churnwatch, its rate is not like for "
             "like"),
            ("each design runs in its own process; the machine may be shared with other jobs: "
             "see the load averages (machine, and per run)"),
        ],
    }
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                        TimeElapsedColumn(), console=console, transient=False,
                        disable=opts.json_output and not console.is_terminal)

    def bar_for(run_no: int) -> Callable[[str], Callable[[int], None]]:
        def bar(label: str) -> Callable[[int], None]:
            task = progress.add_task(f"run {run_no}: {label}", total=len(lines))
            produced = [0]

            def update(n: int) -> None:
                if label.startswith("produce"):
                    produced[0] += n
                    progress.update(task, completed=produced[0])
                else:
                    progress.update(task, completed=min(n, len(lines)))
            return update
        return bar

    runs: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="churnwatch-bench-intake-"))
    try:
        with progress:
            for i in range(opts.repeat):
                res: dict[str, Any] = {}
                if set(opts.designs) & {"churnwatch", "naive", "quix"}:
                    with Run(opts, lines, workdir, i, config) as r:
                        res.update(r.standard(bar_for(i + 1)))
                if "packed" in opts.designs:
                    with Run(opts, lines, workdir, i, config) as r:
                        res["packed"] = r.packed(bar_for(i + 1))
                res["load_avg_1_5_15"] = list(os.getloadavg())
                runs.append(res)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["runs"] = runs
    result["summary"] = summarise(runs, [d for d in DESIGNS if d in opts.designs])
    return result


def print_summary(r: dict[str, Any]) -> None:
    feed, s = r["feed"], r["summary"]
    for n, run_ in enumerate(r["runs"], 1):
        prod = run_.get("producer", {})
        rows = []
        for d in DESIGNS:
            x = run_.get(d)
            if x is None:
                continue
            rows.append([d, x.get("outcome"), report.count(x.get("events_committed")),
                         report.seconds(x.get("startup_s")), report.seconds(x.get("elapsed_committed_s")),
                         report.count(x.get("events_per_s")), report.count(x.get("events_per_s_processed")),
                         report.count(x.get("events_per_s_from_first")),
                         report.count(x.get("mean_events_per_batch"))])
        report.print_table(
            f"intake run {n}: {feed['events']:,} events ({feed['subscribers']:,} subscribers x "
            f"{feed['days']} days), {feed['partitions']} partitions; "
            f"{prod.get('library', '')}, {prod.get('compression', '')}, "
            f"{prod.get('partitioner', '')}, 1 event/message",
            ["design", "outcome", "committed", "startup", "join→committed", "events/s",
             "events/s (proc.)", "from first", "events/batch"], rows,
            caption=f"load average {run_.get('load_avg_1_5_15')}")
        for d in DESIGNS:
            x = run_.get(d) or {}
            if x.get("outcome") in ("crashed", "stalled", "skipped"):
                report.note(f"[bold]{d}: {x['outcome']}[/bold] {x.get('detail', '')} "
                            f"(exit code {x.get('exit_code')}; cause: {x.get('cause')})")
                for line in x.get("log", []):
                    report.note(f"    {line}", )
        lat = (run_.get("churnwatch") or {}).get("latency")
        if lat:
            ms, out = lat["alert_latency_ms"], lat["alert_delivery_latency_ms"]
            report.note(f"latency: {lat['achieved_events_per_s']:,} events/s offered one per "
                        f"message for {lat['window_s']} s: {lat['alerts']} alerts, event→alert "
                        f"detected p50 {ms['p50']} ms, p99 {ms['p99']} ms, max {ms['max']} ms; "
                        f"delivered p50 {out['p50']} ms, p99 {out['p99']} ms, max {out['max']} ms")
            if warm := lat.get("warmup"):
                w = warm["alert_latency_ms"]
                report.note(f"  warm-up after the restart ({warm['seconds']} s, apart): "
                            f"{warm['alerts']} alerts, detected p50 {w['p50']} ms, "
                            f"p99 {w['p99']} ms")
    rat = s["ratios"]
    report.note(f"churnwatch/naive: {rat['churnwatch_over_naive']}x, churnwatch/quix: "
                f"{rat['churnwatch_over_quix']}x (quix does much less), packed/churnwatch: "
                f"{rat['packed_over_churnwatch']}x ({s['ratios_basis']})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    return report.finish("intake", run(opts), opts.out_dir, opts.json_output, print_summary)


if __name__ == "__main__":
    main(sys.argv[1:])
