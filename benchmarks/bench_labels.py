"""Label-burst benchmark: onboarding's labels all at once, through real workers and the fleet
learner.

    python -m benchmarks.bench_labels [--subscribers 50000] [--workers 1|2] [--partitions 4]
        [--publish-interval-s S] [--poll-s 0.2] [--max-s 900] [--stall-s 120] [--out-dir DIR]
        [--json]

One run starts its own embedded broker and redis-server, and ``--workers`` real ``churnwatch
worker`` processes with default settings (one consumer group; the fleet's one learner is
whichever holds the learner lock). The feed is ``benchmarks/label_feed.py``: a BSS profile per
subscriber, written first (confluent-kafka, one event per message, lz4) and processed; then
every subscriber's label (31–60 days after its profile) written at once, the same way. From
the first label produced, every ``--poll-s`` the benchmark reads each worker's ``/metrics``
(``churnwatch_model_examples_total``: examples its pipeline appended to the examples stream;
``churnwatch_model_labels_total``: examples its learner learned; ``churnwatch_model_info``:
the version it scores with) and the published versions in Redis (their ``created_ms``,
stream position and label counts), until every label has been learned, published and every
worker scores with the version that holds them all. It reports

- **appended**: examples appended per second, from the first label produced to the last
  example appended (and from the first appended);
- **learned**: examples learned per second, from the first label produced to the last one
  learned, and the learner's own rate (from its first example to its last);
- the seconds from the first label produced to the last label learned, to the version that
  holds every label, and to every worker scoring with that version;
- **publish→effect**: per version published during the burst, the seconds from its
  ``created_ms`` (the learner's clock when it began publishing) to the first poll at which
  each worker's ``churnwatch_model_info`` shows it (an upper bound, within ``--poll-s``), for
  the fleet the slowest worker; median and max. A version a worker never scored with (a
  newer one was active by its next model poll) is counted as superseded, not timed.

Nothing is compared with targets here; the machine may be shared (see the load averages).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from benchmarks import report
from benchmarks.bench_e2e import processed_count, scrape, stop_process
from benchmarks.bench_scaling import cpu_seconds
from benchmarks.label_feed import LabelBurst, label_burst
from benchmarks.label_watch import BurstWatch
from benchmarks.standard_producer import produce
from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.units import DAY_MS
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_members, worker_lag
from churnwatch.infra.kafka.topics import create_topics

CODE_PATHS = ("streams", "online_models", "features", "churnwatch", "benchmarks/bench_labels.py",
              "benchmarks/label_watch.py", "benchmarks/label_feed.py")


@dataclass(frozen=True)
class Options:
    subscribers: int = 50_000
    workers: int = 1
    partitions: int = 4
    seed: int = 5
    poll_s: float = 0.2
    publish_interval_s: float | None = None
    max_s: float = 900.0
    stall_s: float = 120.0
    out_dir: str | None = None
    json_output: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="bench_labels", description=__doc__.split("\n")[0])
    p.add_argument("--subscribers", type=int, default=50_000, help="profiles, then as many "
                   "labels (default 50,000: an onboarding burst)")
    p.add_argument("--workers", type=int, choices=(1, 2), default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--poll-s", type=float, default=0.2, help="how often /metrics and the "
                   "versions are read (the resolution of publish→effect)")
    p.add_argument("--publish-interval-s", type=float, default=None, help="the workers' "
                   "model_publish_interval_s (default: theirs, 10 s); shorter gives more "
                   "versions during the burst to time publish→effect on")
    p.add_argument("--max-s", type=float, default=900.0, help="cap from the first label "
                   "produced; the figures then cover what was done")
    p.add_argument("--stall-s", type=float, default=120.0, help="no progress for this long: "
                   "the run is reported as stalled")
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--json", dest="json_output", action="store_true",
                   help="print the report as JSON on stdout")
    a = p.parse_args(argv)
    if a.subscribers < 1 or a.poll_s <= 0:
        p.error("--subscribers must be at least 1 and --poll-s positive")
    return Options(subscribers=a.subscribers, workers=a.workers, partitions=a.partitions,
                   seed=a.seed, poll_s=a.poll_s,
                   publish_interval_s=a.publish_interval_s, max_s=a.max_s, stall_s=a.stall_s,
                   out_dir=a.out_dir, json_output=a.json_output)


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    port: int
    log: Path


class Run:
    """Its own broker, Redis, working directory and workers."""

    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts, self.workdir = opts, workdir
        self.stack = ExitStack()
        self.app_id = "churnwatch-bench-labels"
        self.workers: list[WorkerProc] = []

    def __enter__(self) -> Self:
        broker = self.stack.enter_context(EmbeddedBroker())
        redis = self.stack.enter_context(EmbeddedRedis())
        self.bootstrap, self.redis_url = broker.bootstrap, redis.url
        asyncio.run(create_topics(self.bootstrap, {t: self.opts.partitions for t in (
            EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def start_worker(self, index: int) -> WorkerProc:
        port = free_port()
        env = dict(os.environ, CHURNWATCH_BROKER=f"kafka://{self.bootstrap}",
                   CHURNWATCH_REDIS_URL=self.redis_url, CHURNWATCH_APP_ID=self.app_id,
                   CHURNWATCH_METRICS_PORT=str(port),
                   CHURNWATCH_PARTITIONS=str(self.opts.partitions),
                   CHURNWATCH_WEB_ENABLED="false", TMPDIR=str(self.workdir))
        for key in ("CHURNWATCH_CONFIG", "CHURNWATCH_WEBHOOK_URL",
                    "CHURNWATCH_MODEL_PUBLISH_INTERVAL_S"):
            env.pop(key, None)
        if self.opts.publish_interval_s is not None:
            env["CHURNWATCH_MODEL_PUBLISH_INTERVAL_S"] = str(self.opts.publish_interval_s)
        log = self.workdir / f"worker{index}.log"
        proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.stack.callback(stop_process, proc)
        w = WorkerProc(proc, port, log)
        self.workers.append(w)
        return w

    def check_alive(self) -> None:
        for i, w in enumerate(self.workers):
            if w.proc.poll() is not None:
                tail = w.log.read_text(errors="replace")[-3000:]
                raise ChurnwatchError(f"worker {i} exited ({w.proc.returncode}):\n{tail}")

    def wait_profiles(self, profiles: int, timeout_s: float) -> None:
        """Until the group has every worker, has processed and committed every profile."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout_s:
            self.check_alive()
            done = sum(processed_count(scrape(w.port)) for w in self.workers)
            if done >= profiles and asyncio.run(group_members(
                    self.bootstrap, self.app_id)) == len(self.workers) and asyncio.run(
                    worker_lag(self.bootstrap, self.app_id)) == 0:
                return
            time.sleep(0.5)
        raise ChurnwatchError(f"the workers did not process the {profiles:,} profiles within "
                              f"{timeout_s:.0f} s (logs in {self.workdir})")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def one_run(opts: Options, feed: LabelBurst, workdir: Path) -> dict[str, Any]:
    labels = feed.subscribers
    out: dict[str, Any] = {}
    with Run(opts, workdir) as run:
        t = time.perf_counter()
        delivery = produce(run.bootstrap, EVENTS_TOPIC, feed.profiles, compression="lz4")
        out["profiles"] = {"messages": delivery.messages,
                           "produce_s": round(time.perf_counter() - t, 3)}
        spawned = time.perf_counter()
        for i in range(opts.workers):
            run.start_worker(i)
        run.wait_profiles(labels, opts.max_s)
        out["profiles"]["spawn_to_processed_s"] = round(time.perf_counter() - spawned, 3)
        cpu0 = cpu_seconds([w.proc.pid for w in run.workers])
        watch = BurstWatch(run.redis_url, [w.port for w in run.workers], labels, opts.poll_s)
        produced: dict[str, Any] = {}

        def producer() -> None:
            t1 = time.time()
            d = produce(run.bootstrap, EVENTS_TOPIC, feed.labels, compression="lz4")
            produced.update(messages=d.messages, produce_s=round(time.time() - t1, 3))

        t0 = time.time()
        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        outcome = watch.run(t0, opts.max_s, opts.stall_s, run.check_alive)
        thread.join(120)
        cpu1 = cpu_seconds([w.proc.pid for w in run.workers])
        out["labels_produced"] = produced
        out.update(watch.figures(t0))
        out["outcome"] = outcome
        out["workers_cpu_s"] = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 else None
        out["learner"] = watch.learner_worker([w.proc.pid for w in run.workers])
        out["worker_counts"] = [watch.counts(w.port) for w in run.workers]
    out["load_avg_1_5_15"] = list(os.getloadavg())
    return out


def run(opts: Options) -> dict[str, Any]:
    start_ms = int(time.time() * 1000) - 120 * DAY_MS
    feed = label_burst(opts.subscribers, start_ms, opts.seed)
    result: dict[str, Any] = {
        "benchmark": "labels", "created": report.utc_now(), "options": asdict(opts),
        "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
        "feed": {"subscribers": feed.subscribers, "labels": len(feed.labels),
                 "churn_labels": feed.churners, "partitions": opts.partitions,
                 "producer": "confluent-kafka, one event per message, lz4",
                 "shape": "a profile per subscriber (processed first), then its label 31-60 "
                          "days later, all labels written at once"},
        "notes": [
            ("t0 is the first label produced; rates divide examples by seconds from t0 unless "
             "named otherwise"),
            (f"publish→effect: from a version's created_ms to the first poll (every "
             f"{opts.poll_s} s) showing a worker scoring with it: an upper bound"),
            ("the workers run with default settings (model_publish_interval_s 10 unless "
             "--publish-interval-s; model poll every 2 s, learner step every 1 s); the "
             "machine may be shared with other jobs: see the load averages"),
        ],
    }
    workdir = Path(tempfile.mkdtemp(prefix="churnwatch-bench-labels-"))
    try:
        result["run"] = one_run(opts, feed, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def print_summary(r: dict[str, Any]) -> None:
    x, feed = r["run"], r["feed"]
    app, lrn, eff = x["appended"], x["learned"], x["publish_to_effect"]
    report.print_table(
        f"label burst: {feed['labels']:,} labels ({feed['churn_labels']:,} churn), "
        f"{r['options']['workers']} worker(s), {feed['partitions']} partitions, publish "
        f"interval {r['options']['publish_interval_s'] or 'default'}; outcome {x['outcome']}",
        ["figure", "value"],
        [["labels produced in", report.seconds(x["labels_produced"].get("produce_s"))],
         ["examples appended", report.count(app["examples"])],
         ["appended/s (from first label produced)", report.count(app["per_s"])],
         ["examples learned", report.count(lrn["examples"])],
         ["learned/s (from first label produced)", report.count(lrn["per_s"])],
         ["learned/s (learner, first to last learned)", report.count(lrn["per_s_learner"])],
         ["first label produced → last learned", report.seconds(lrn["last_s"])],
         ["→ version with every label published", report.seconds(x["all_published_s"])],
         ["→ every worker scores with it", report.seconds(x["all_scoring_s"])],
         ["versions published in the burst", report.count(eff["versions"])],
         ["publish→effect median (fleet)", report.seconds(eff["median_s"])],
         ["publish→effect max (fleet)", report.seconds(eff["max_s"])],
         ["workers' CPU seconds in the burst", report.seconds(x["workers_cpu_s"])]],
        caption=f"load average {x['load_avg_1_5_15']}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    return report.finish("labels", run(opts), opts.out_dir, opts.json_output, print_summary)


if __name__ == "__main__":
    main(sys.argv[1:])
