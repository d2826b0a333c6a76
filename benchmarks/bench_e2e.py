"""End-to-end benchmark (`churnwatch bench`): churnwatch against the naive design, same feed, same run.

    churnwatch bench [--quick] [--json] [--subscribers N] [--days D]
    python -m benchmarks.bench_e2e [same options] [--out-dir DIR]

One run starts its own embedded broker and redis-server, then

1. **throughput**: a real `churnwatch worker` process; the simulator feed (faults on, as in the
   demo) is encoded first, then produced in multi-event messages (``EventProducer``, as the demo
   and ``replay`` do). Timed from the first produced event to (a) every offset committed by the
   worker's group (the headline, as a client would see it) and (b) the worker's /metrics
   counting every event processed (Faust commits on a 2.8 s timer, so (a) carries up to ~3 s
   of commit delay: visible on short runs). Stage durations and counts come from /metrics.
2. **latency**: the same worker at a fixed offered load of about half the measured sustained
   rate, on the same subscribers (their timelines continued after the throughput feed's last
   day; ``--latency-subscribers`` for another population), in small messages (one per partition per 10 ms tick) whose broker timestamps are the
   producer's send times; detection latency is each alert's ``detected_at - ingested_at``
   (p50/p95/p99/max), next to the worker's own histograms over that window (per stage and
   event-to-alert; bucket upper bounds).
3. **naive baseline**: the worker is stopped; ``benchmarks.naive_faust`` (a plain Faust agent,
   one Kafka message per event, one pipelined Redis round trip per event, the three indicators
   and the 2-of-3 rule in Python) consumes the same feed produced one event per message keyed by
   subscriber, timed the same two ways. With a time cap (``--naive-max-s``) its rates come from
   what it had done when the cap hit.

The ratio churnwatch/naive is reported on both bases. Nothing is compared with targets here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import msgspec
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import report, summary
from churnwatch.core.errors import ChurnwatchError, EventError
from churnwatch.core.events import normalise_subscriber
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import high_watermarks
from churnwatch.infra.kafka.produce import EventProducer, partition_for
from churnwatch.infra.kafka.topics import create_topics

NAIVE_TOPIC = "bench.naive.events"
CODE_PATHS = ("streams", "features", "rules", "alerting", "online_models", "churnwatch",
              "benchmarks/bench_e2e.py", "benchmarks/naive_faust.py")
TICK_S = 0.01
MIN_ALERTS = 20  # below this, the alert-based latency percentiles are called thin
# msgspec, not orjson, encodes the feeds held in memory: each orjson.dumps() result keeps a
# ~4 KB allocation (1.3 GB for 320k events here), msgspec's are exact (~0.1 GB)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Options:
    quick: bool = False
    subscribers: int = 1000
    days: int = 150
    seed: int = 7
    partitions: int = 4
    per_message: int = 500
    latency_s: float = 20.0
    latency_rate: float | None = None
    latency_subscribers: int | None = None
    naive_max_s: float = 90.0
    timeout_s: float = 300.0
    out_dir: str | None = None
    json_output: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="bench_e2e", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="~300 subscribers x 60 days, short "
                   "latency window, naive capped at 25 s (under 2 minutes)")
    p.add_argument("--json", dest="json_output", action="store_true",
                   help="print the report as JSON on stdout")
    p.add_argument("--subscribers", type=int, default=None)
    p.add_argument("--days", type=int, default=None)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--per-message", type=int, default=500, help="events per Kafka message "
                   "in the throughput feed")
    p.add_argument("--latency-s", type=float, default=None, help="latency window (s)")
    p.add_argument("--latency-rate", type=float, default=None, help="offered load of the "
                   "latency window, events/s (default: half the measured sustained rate)")
    p.add_argument("--latency-subscribers", type=int, default=None, help="subscribers of the "
                   "latency feed (default: the throughput feed's, whose timelines it continues)")
    p.add_argument("--naive-max-s", type=float, default=None, help="cap on the naive run (s)")
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    a = p.parse_args(argv)
    return Options(
        quick=a.quick,
        subscribers=a.subscribers or (300 if a.quick else 1000),
        days=a.days or (60 if a.quick else 150),
        seed=a.seed, partitions=a.partitions, per_message=a.per_message,
        latency_s=a.latency_s if a.latency_s is not None else (8.0 if a.quick else 20.0),
        latency_rate=a.latency_rate, latency_subscribers=a.latency_subscribers,
        naive_max_s=a.naive_max_s if a.naive_max_s is not None else (25.0 if a.quick else 90.0),
        timeout_s=a.timeout_s, out_dir=a.out_dir, json_output=a.json_output)


# ---------------------------------------------------------------------------- helpers
def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Every sample of the worker's /metrics, by family name ({} if unreachable)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text.decode())}


def processed_count(metrics: dict) -> int:
    """Records the worker has accounted for: valid events (applied, duplicate or late) plus
    dead-lettered invalid records. Late events are dead-lettered too but counted once."""
    total = sum(v for name, _, v in metrics.get("churnwatch_events", ()) if name.endswith("_total"))
    total += sum(v for name, labels, v in metrics.get("churnwatch_dlq_records", ())
                 if name.endswith("_total") and labels.get("kind") != "late")
    return int(total)


def counts(metrics: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, labels, value in metrics.get("churnwatch_events", ()):
        if name.endswith("_total"):
            key = f"events_{labels['outcome']}"
            out[key] = out.get(key, 0) + int(value)
    for family, key in (("churnwatch_dlq_records", "dead_letters"),
                        ("churnwatch_alerts", "alerts")):
        out[key] = int(sum(v for n, _, v in metrics.get(family, ()) if n.endswith("_total")))
    return out


def histograms(metrics: dict, family: str, label: str | None = None) -> dict[str, dict]:
    """{label value: {"buckets": {le: cumulative}, "count", "sum"}} of one histogram family."""
    out: dict[str, dict] = {}
    for name, labels, value in metrics.get(family, ()):
        key = labels.get(label, "all") if label else "all"
        h = out.setdefault(key, {"buckets": {}, "count": 0.0, "sum": 0.0})
        if name.endswith("_bucket"):
            h["buckets"][float(labels["le"])] = value
        elif name.endswith("_count"):
            h["count"] = value
        elif name.endswith("_sum"):
            h["sum"] = value
    return out


def hist_diff(after: dict[str, dict], before: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for key, h in after.items():
        b = before.get(key, {"buckets": {}, "count": 0.0, "sum": 0.0})
        out[key] = {"buckets": {le: v - b["buckets"].get(le, 0.0) for le, v in h["buckets"].items()},
                    "count": h["count"] - b["count"], "sum": h["sum"] - b["sum"]}
    return out


def hist_summary(h: dict) -> dict[str, Any]:
    """Count, mean and p50/p95/p99 *bucket upper bounds* (ms) of one histogram."""
    n = h["count"]
    res: dict[str, Any] = {"count": int(n), "mean_ms": round(h["sum"] / n * 1000, 3) if n else None}
    for q in (50, 95, 99):
        bound = None
        if n:
            for le, cum in sorted(h["buckets"].items()):
                if cum >= n * q / 100:
                    bound = le * 1000 if math.isfinite(le) else None
                    break
        res[f"p{q}_le_ms"] = bound
    return res


def percentiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(values, float)
    return {"p50": round(float(np.percentile(arr, 50)), 1),
            "p95": round(float(np.percentile(arr, 95)), 1),
            "p99": round(float(np.percentile(arr, 99)), 1), "max": round(float(arr.max()), 1)}


class CommitWatch:
    """Committed offsets of a consumer group on one topic, from one long-lived consumer."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                         enable_auto_commit=False)
        self.topic = topic
        self.parts: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        await self.consumer.start()
        await self.consumer.topics()
        self.parts = [TopicPartition(self.topic, p)
                      for p in sorted(self.consumer.partitions_for_topic(self.topic) or ())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def committed(self) -> int:
        return sum([await self.consumer.committed(tp) or 0 for tp in self.parts])

    async def ends(self) -> int:
        return sum((await high_watermarks(self.consumer, self.topic)).values())


def stop_process(proc: subprocess.Popen, wait_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_for_group(bootstrap: str, group: str, proc: subprocess.Popen,
                         timeout_s: float = 120.0) -> None:
    """Until ``group`` is Stable with members (the process has joined)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ChurnwatchError(f"{group}: the process exited during startup")
            groups = await admin.describe_consumer_groups([group])
            if groups and groups[0].groups and groups[0].groups[0][2] == "Stable" \
                    and groups[0].groups[0][5]:
                return
            await asyncio.sleep(0.25)
        raise ChurnwatchError(f"{group} did not join its consumer group within {timeout_s:.0f} s")
    finally:
        await admin.close()


def routed(lines: list[bytes], partitions: int) -> list[tuple[int | None, bytes | None, bytes]]:
    """(partition, key, line) per encoded event; unroutable (invalid) lines get None, None."""
    out: list[tuple[int | None, bytes | None, bytes]] = []
    for raw in lines:
        try:
            sid = normalise_subscriber(orjson.loads(raw)["subscriber_id"])
            out.append((partition_for(sid, partitions), sid.encode(), raw))
        except (orjson.JSONDecodeError, EventError, KeyError, TypeError, AttributeError):
            out.append((None, None, raw))
    return out


# ---------------------------------------------------------------------------- the run
class Bench:
    def __init__(self, opts: Options, console: Console, progress: Progress) -> None:
        self.opts = opts
        self.console = console
        self.progress = progress
        self.stack = ExitStack()

    def start(self) -> None:
        self.broker = self.stack.enter_context(EmbeddedBroker()).url
        self.redis_url = self.stack.enter_context(EmbeddedRedis()).url
        self.bootstrap = self.broker.split("://", 1)[-1]
        self.workdir = Path(self.stack.enter_context(
            tempfile.TemporaryDirectory(prefix="churnwatch-bench-")))
        self.app_id = "churnwatch-bench"
        self.metrics_port = free_port()
        asyncio.run(create_topics(self.bootstrap, {t: self.opts.partitions for t in (
            EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC, NAIVE_TOPIC)}))

    def close(self) -> None:
        self.stack.close()

    def start_worker(self) -> subprocess.Popen:
        env = dict(os.environ, CHURNWATCH_BROKER=self.broker, CHURNWATCH_REDIS_URL=self.redis_url,
                   CHURNWATCH_ALERTS_JSONL=str(self.workdir / "alerts.jsonl"),
                   CHURNWATCH_APP_ID=self.app_id, CHURNWATCH_METRICS_PORT=str(self.metrics_port),
                   CHURNWATCH_PARTITIONS=str(self.opts.partitions),
                   CHURNWATCH_WEB_ENABLED="false")
        for key in ("CHURNWATCH_CONFIG", "CHURNWATCH_WEBHOOK_URL"):
            env.pop(key, None)
        self.worker_log = self.workdir / "worker.log"
        proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"], env=env,
                                stdout=self.worker_log.open("wb"), stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        return proc

    def start_naive(self) -> subprocess.Popen:
        self.naive_stats = self.workdir / "naive-stats.json"
        env = dict(os.environ, NAIVE_BROKER=self.broker, NAIVE_REDIS_URL=self.redis_url,
                   NAIVE_TOPIC=NAIVE_TOPIC, NAIVE_STATS=str(self.naive_stats),
                   NAIVE_APP_ID="churnwatch-bench-naive",
                   NAIVE_PARTITIONS=str(self.opts.partitions))
        self.naive_log = self.workdir / "naive.log"
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.naive_faust"], env=env,
                                cwd=report.REPO_ROOT, stdout=self.naive_log.open("wb"),
                                stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        return proc

    def naive_progress(self) -> dict[str, float]:
        try:
            return orjson.loads(self.naive_stats.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}

    # ------------------------------------------------------------ phase 1
    async def throughput(self, worker: subprocess.Popen, lines: list[bytes]) -> dict[str, Any]:
        opts, bar = self.opts, self.progress
        await wait_for_group(self.bootstrap, self.app_id, worker)
        total = len(lines)
        produce = bar.add_task("churnwatch: produce", total=total)
        drain = bar.add_task("churnwatch: process", total=total)
        before = scrape(self.metrics_port)
        base = processed_count(before)
        async with CommitWatch(self.bootstrap, self.app_id, EVENTS_TOPIC) as watch:
            base_committed = await watch.committed()
            t0 = time.perf_counter()
            async with EventProducer(self.bootstrap, EVENTS_TOPIC, opts.partitions,
                                     opts.per_message) as producer:
                sent = await producer.send_lines(lines, lambda n: bar.advance(produce, n))
            bar.update(produce, completed=total)
            produced_s = time.perf_counter() - t0
            end = await watch.ends()
            processed_s = committed_s = None
            deadline = time.monotonic() + opts.timeout_s
            while committed_s is None:
                now = time.perf_counter() - t0
                if processed_s is None:
                    done = processed_count(await asyncio.to_thread(scrape, self.metrics_port))
                    bar.update(drain, completed=min(total, done - base))
                    if done - base >= sent:
                        processed_s = now
                if await watch.committed() >= end:
                    committed_s = time.perf_counter() - t0
                    break
                if worker.poll() is not None:
                    raise ChurnwatchError("the worker exited during the throughput run:\n"
                                          + self.worker_log.read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise ChurnwatchError(f"the worker did not catch up in {opts.timeout_s} s")
                await asyncio.sleep(0.05)
            messages = end - base_committed
        bar.update(drain, completed=total)
        after = scrape(self.metrics_port)
        stages = hist_diff(histograms(after, "churnwatch_stage_duration_seconds", "stage"),
                           histograms(before, "churnwatch_stage_duration_seconds", "stage"))
        batch = hist_diff(histograms(after, "churnwatch_batch_events"),
                          histograms(before, "churnwatch_batch_events")).get("all")
        return {
            "events": sent, "messages": messages, "events_per_message": round(sent / messages, 1),
            "produce_seconds": round(produced_s, 3),
            "elapsed_committed_s": round(committed_s, 3),
            "events_per_s": round(sent / committed_s),
            "elapsed_processed_s": round(processed_s, 3) if processed_s else None,
            "events_per_s_processed": round(sent / processed_s) if processed_s else None,
            "counts": counts(after),
            "batches": int(batch["count"]) if batch else None,
            "mean_events_per_batch": round(batch["sum"] / batch["count"], 1)
            if batch and batch["count"] else None,
            "stages": {k: {**hist_summary(v), "total_s": round(v["sum"], 3)}
                       for k, v in sorted(stages.items())},
        }

    # ------------------------------------------------------------ phase 2
    async def latency(self, worker: subprocess.Popen, rate: float) -> dict[str, Any]:
        opts, bar = self.opts, self.progress
        need = int(rate * opts.latency_s * 1.1) + 1000
        per_sub_day = 2.1  # events per subscriber-day in the simulator (measured)
        # the throughput feed's population (the load its maximum was measured on), continuing
        # after it: the first month start after its last day
        subs = opts.latency_subscribers or opts.subscribers
        days = max(30, math.ceil(need / (per_sub_day * subs)))
        after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=opts.days)
        start = datetime(after.year + after.month // 12, after.month % 12 + 1, 1, tzinfo=UTC)
        sim = Simulation(SimConfig(subscribers=subs, days=days, seed=opts.seed + 1000,
                                   start=start))
        feed = routed([_encode(e) for e in sim.events()], opts.partitions)
        task = bar.add_task(f"latency: {report.si(rate)} ev/s offered", total=opts.latency_s)
        before = scrape(self.metrics_port)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            alert_start = await high_watermarks(consumer, ALERTS_TOPIC)
        finally:
            await consumer.stop()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=1,
                                    max_batch_size=1 << 20, max_request_size=8 << 20)
        await producer.start()
        sent = 0
        pending: list[asyncio.Future] = []
        try:
            t0 = time.perf_counter()
            tick = 0
            while True:
                elapsed = time.perf_counter() - t0
                if elapsed >= opts.latency_s or sent >= len(feed):
                    break
                due = min(len(feed), int(rate * elapsed)) - sent
                if due > 0:
                    groups: dict[int, list[bytes]] = {}
                    for part, _, raw in feed[sent:sent + due]:
                        groups.setdefault(part if part is not None else sent % opts.partitions,
                                          []).append(raw)
                    now_ms = int(time.time() * 1000)
                    for part, items in groups.items():
                        pending.append(await producer.send(
                            EVENTS_TOPIC, b"[" + b",".join(items) + b"]", partition=part,
                            timestamp_ms=now_ms))
                    sent += due
                    if len(pending) > 2000:
                        await asyncio.gather(*pending)
                        pending.clear()
                bar.update(task, completed=elapsed)
                tick += 1
                await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.perf_counter()))
            window = time.perf_counter() - t0
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        bar.update(task, completed=opts.latency_s)
        async with CommitWatch(self.bootstrap, self.app_id, EVENTS_TOPIC) as watch:
            end = await watch.ends()
            deadline = time.monotonic() + opts.timeout_s
            while await watch.committed() < end:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise ChurnwatchError("the worker did not finish the latency feed")
                await asyncio.sleep(0.1)
        drained = time.perf_counter() - t0
        after = scrape(self.metrics_port)
        alerts = await self.read_alerts(alert_start)
        lat = [a["detected_at"] - a["ingested_at"] for a in alerts if a.get("ingested_at")]
        stages = hist_diff(histograms(after, "churnwatch_stage_duration_seconds", "stage"),
                           histograms(before, "churnwatch_stage_duration_seconds", "stage"))
        alert_hist = hist_diff(histograms(after, "churnwatch_event_to_alert_seconds"),
                               histograms(before, "churnwatch_event_to_alert_seconds"))
        per_batch = {k: hist_summary(v) for k, v in sorted(stages.items())}
        waits = hist_diff(histograms(after, "churnwatch_batch_wait_seconds"),
                          histograms(before, "churnwatch_batch_wait_seconds"))
        batches = int(waits["all"]["count"]) if waits else 0
        return {
            "offered_events_per_s": round(rate),
            "feed": {"subscribers": subs, "days": days, "start": start.date().isoformat()},
            "achieved_events_per_s": round(sent / window) if window else None,
            "window_s": round(window, 2), "drained_after_s": round(drained, 2),
            "events": sent, "alerts": len(alerts), "alerts_with_ingested_at": len(lat),
            "alert_latency_ms": percentiles_ms(lat),
            "alert_latency_basis": "alerts' detected_at - ingested_at (ingested_at = broker "
                                   "timestamp = the producer's send time)",
            "enough_alerts": len(lat) >= MIN_ALERTS,
            "alerts_by_rule": {k: int(v) for k, v in
                               zip(*np.unique([",".join(a.get("rules", ())) for a in alerts],
                                              return_counts=True))} if alerts else {},
            "worker_event_to_alert": hist_summary(alert_hist["all"]) if alert_hist else None,
            "worker_stage_per_batch": per_batch,
            "worker_stage_per_batch_basis": "churnwatch_stage_duration_seconds over the window: "
                                            "per-batch time of each stage, bucket upper bounds",
            "per_batch_p99_le_ms_sum": round(sum(v["p99_le_ms"] or 0 for v in per_batch.values()),
                                             3),
            "batches": batches,
            "mean_events_per_batch": round(sent / batches) if batches else None,
            "mean_batch_cycle_ms": round(window * 1000 / batches, 1) if batches else None,
            "worker_batch_wait": hist_summary(waits["all"]) if waits else None,
            "worker_batch_wait_basis": "churnwatch_batch_wait_seconds: a batch's oldest message's "
                                       "age when the batch starts (queueing before processing)",
        }

    async def read_alerts(self, start: dict[TopicPartition, int]) -> list[dict]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await high_watermarks(consumer, ALERTS_TOPIC)
            for tp, offset in start.items():
                consumer.seek(tp, offset)
            out: list[dict] = []
            remaining = {tp for tp, end in ends.items() if end > start.get(tp, 0)}
            deadline = time.monotonic() + 30
            while remaining and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    out.extend(orjson.loads(r.value) for r in records)
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            return out
        finally:
            await consumer.stop()

    # ------------------------------------------------------------ phase 3
    async def naive(self, lines: list[bytes]) -> dict[str, Any]:
        """The feed is produced (one event per message) *before* the naive app starts, so it
        never competes with the producer for CPU; its clock starts when its group has joined."""
        opts, bar = self.opts, self.progress
        feed = routed(lines, opts.partitions)
        total = len(feed)
        produce = bar.add_task("naive: produce (1 event/message)", total=total)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                    max_batch_size=1 << 20)
        await producer.start()
        try:
            pending = []
            for i, (part, key, raw) in enumerate(feed):
                pending.append(await producer.send(
                    NAIVE_TOPIC, raw, key=key,
                    partition=part if part is not None else i % opts.partitions))
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(produce, completed=i + 1)
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        bar.update(produce, completed=total)
        group = "churnwatch-bench-naive"
        proc = self.start_naive()
        capped = False
        async with CommitWatch(self.bootstrap, group, NAIVE_TOPIC) as watch:
            end = await watch.ends()
            base_committed = await watch.committed()
            await wait_for_group(self.bootstrap, group, proc)
            t0_wall, t0 = time.time(), time.perf_counter()
            task = bar.add_task(f"naive: process (cap {opts.naive_max_s:.0f} s)", total=total)
            last_change = (0.0, 0)  # (seconds since t0, committed events)
            committed_s = None
            while True:
                now = time.perf_counter() - t0
                done = await watch.committed() - base_committed
                if done > last_change[1]:
                    last_change = (now, done)
                stats = self.naive_progress()
                bar.update(task, completed=min(total, int(stats.get("processed", 0))))
                if base_committed + done >= end:
                    committed_s = now
                    break
                if now >= opts.naive_max_s:
                    capped = True
                    break
                if proc.poll() is not None:
                    raise ChurnwatchError("the naive app exited:\n"
                                          + self.naive_log.read_text()[-3000:])
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.25)  # one more stats write
            stats = self.naive_progress()
        stop_process(proc)
        processed = int(stats.get("processed", 0))
        processed_s = (stats["t"] - t0_wall) if stats else None
        if committed_s is not None:
            committed_events, committed_time = total, committed_s
        else:
            committed_time, committed_events = last_change
        return {
            "events": total, "capped": capped, "cap_s": opts.naive_max_s,
            "events_committed": committed_events,
            "elapsed_committed_s": round(committed_time, 3) if committed_time else None,
            "events_per_s": round(committed_events / committed_time) if committed_time else None,
            "events_processed": processed,
            "elapsed_processed_s": round(processed_s, 3) if processed_s else None,
            "events_per_s_processed": round(processed / processed_s) if processed_s else None,
            "redis_round_trip_s": round(stats.get("redis_s", 0.0), 3),
            "features_python_s": round(stats.get("features_s", 0.0), 3),
            "alerts_2_of_3": int(stats.get("alerts", 0)),
            "invalid": int(stats.get("invalid", 0)),
            "duplicates": int(stats.get("duplicates", 0)),
            "basis": ("feed produced before the app started; clock from its group join; "
                      + ("rates are what it had committed/processed when the cap hit"
                         if capped else "the whole feed")),
        }


def run(opts: Options) -> dict[str, Any]:
    console = Console(stderr=True)
    sim = Simulation(SimConfig(subscribers=opts.subscribers, days=opts.days, seed=opts.seed,
                               churn_rate=0.08, duplicate_rate=0.01, invalid_rate=0.002,
                               out_of_order_rate=0.01))
    lines = [_encode(e) for e in sim.events()]
    result: dict[str, Any] = {
        "benchmark": "e2e", "created": report.utc_now(), "options": asdict(opts),
        "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
        "feed": {"subscribers": opts.subscribers, "days": opts.days, "seed": opts.seed,
                 "events": len(lines), "partitions": opts.partitions,
                 "faults": "1 % duplicates, 0.2 % invalid, 1 % out of order"},
    }
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"), TimeElapsedColumn(),
                        console=console, transient=False)
    bench = Bench(opts, console, progress)
    with progress:
        try:
            bench.start()
            worker = bench.start_worker()
            result["churnwatch"] = asyncio.run(bench.throughput(worker, lines))
            rate = result["churnwatch"]["events_per_s_processed"] \
                or result["churnwatch"]["events_per_s"]
            result["latency"] = asyncio.run(bench.latency(
                worker, opts.latency_rate or max(200.0, rate / 2)))
            stop_process(worker)
            result["naive"] = asyncio.run(bench.naive(lines))
        finally:
            bench.close()
    cw, nv = result["churnwatch"], result["naive"]
    result["ratio"] = round(cw["events_per_s"] / nv["events_per_s"], 2) \
        if nv.get("events_per_s") else None
    result["ratio_processed"] = round(cw["events_per_s_processed"] / nv["events_per_s_processed"],
                                      2) \
        if cw.get("events_per_s_processed") and nv.get("events_per_s_processed") else None
    return result


def print_summary(r: dict[str, Any]) -> None:
    cw, nv, lat = r["churnwatch"], r["naive"], r["latency"]
    feed = r["feed"]
    report.print_table(
        f"end to end: {feed['events']:,} events ({feed['subscribers']} subscribers x "
        f"{feed['days']} days), {feed['partitions']} partitions, one worker process",
        ["design", "events", "to committed", "events/s", "to processed", "events/s (proc.)",
         "msgs"],
        [["churnwatch", f"{cw['events']:,}", f"{cw['elapsed_committed_s']:.2f} s",
          f"{cw['events_per_s']:,}", report.seconds(cw["elapsed_processed_s"]),
          report.count(cw["events_per_s_processed"]), f"{cw['messages']:,}"],
         ["naive Faust" + (" (capped)" if nv["capped"] else ""), f"{nv['events_committed']:,}",
          report.seconds(nv["elapsed_committed_s"]), report.count(nv["events_per_s"]), report.seconds(nv["elapsed_processed_s"]),
          report.count(nv["events_per_s_processed"]), f"{nv['events_committed']:,}"]],
        caption=f"ratio churnwatch/naive: {r['ratio']}x to committed, "
                f"{r['ratio_processed']}x processed")
    stages = cw["stages"]
    report.print_table(
        f"churnwatch stages over the throughput run ({cw['batches']} batches, "
        f"{cw['mean_events_per_batch']} events/batch)",
        ["stage", "batches", "total s", "mean ms", "p99 ≤ ms"],
        [[k, v["count"], v["total_s"], v["mean_ms"], v["p99_le_ms"]] for k, v in stages.items()])
    a = lat["alert_latency_ms"]
    w = lat["worker_event_to_alert"] or {}
    report.print_table(
        f"latency at {lat['offered_events_per_s']:,} events/s offered "
        f"({lat['achieved_events_per_s']:,} achieved, {lat['window_s']} s, "
        f"{lat['events']:,} events, {lat['feed']['subscribers']:,} subscribers)",
        ["measure", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [["event→alert (alerts' detected_at - ingested_at)", lat["alerts_with_ingested_at"],
          a["p50"], a["p95"],
          a["p99"], a["max"]],
         ["event→alert (worker histogram, bucket ≤)", w.get("count"), w.get("p50_le_ms"),
          w.get("p95_le_ms"), w.get("p99_le_ms"), ""],
         *([["per batch: wait of its oldest event (histogram, bucket ≤)", bw["count"],
             bw["p50_le_ms"], bw["p95_le_ms"], bw["p99_le_ms"], ""]]
           if (bw := lat.get("worker_batch_wait")) else [])]
        + [[f"per batch: {k} (stage histogram, bucket ≤)", v["count"], v["p50_le_ms"],
            v["p95_le_ms"], v["p99_le_ms"], ""] for k, v in lat["worker_stage_per_batch"].items()],
        caption=(f"{lat['batches']:,} batches, {lat['mean_events_per_batch']:,} events and "
                 f"{lat['mean_batch_cycle_ms']} ms each on average" if lat.get("batches") else "")
        + ("" if lat["enough_alerts"] else
           f"; only {lat['alerts_with_ingested_at']} alerts in the window: the alert percentiles "
           "are thin, see the per-batch stage rows"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    result = run(opts)
    path = report.write_report("e2e", result, opts.out_dir)
    result["report_path"] = str(path)
    result["summary_paths"] = [str(p) for p in summary.write_e2e(result, path)[:1]]
    if opts.json_output:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        print_summary(result)
        report.note(f"report: {path}\nsummary: {result['summary_paths'][0]}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
