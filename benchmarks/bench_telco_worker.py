"""The Telco feed through a real worker, as an operator would run it (issue #22).

``benchmarks/bench_telco_feed.py`` replays the IBM Telco table in BSS order (each customer's
``profile``, its ``churn``/``active`` label 31–60 days later) through the worker's pipeline
in-process, the learner stepping between batches. This benchmark sends the same feed
(``bench_telco_feed.feed``, same seed) through the real thing: an embedded Tansu broker, a
``redis-server``, and a ``churnwatch worker`` subprocess with **default settings** (only the
broker and Redis addresses, its ports, ``publish_scores`` so that its score records reach
``churn.scores``, and whatever ``--env`` sets). A confluent-kafka producer (librdkafka, lz4,
one event per message, keyed by subscriber) sends the events in event-time order, paced at
``--days-per-s`` days of event time per wall-clock second. When the worker has committed
everything, the score records it published for the profile events are read back from
``churn.scores`` and scored against the labels: prequential ROC AUC over all profiles and
over the second half of event time (``bench_telco_feed``'s definition).

In the same run: the in-process replay (``bench_telco_feed.run``: the same feed through
``streams/replay.py``, which is what ``churnwatch evaluate`` runs; its own figures included)
and the batch baselines (5-fold CV logistic regression and gradient boosting). Each worker
run also reports how old the model was when it scored: for each profile's score record, the
age of the newest version published before it was written, in seconds and in days of event
time at the pace sent (a version 10 s old at 2 days/s has not learned the last 20 days).

    python -m benchmarks.bench_telco_worker --csv PATH [--seed 7] [--days-per-s 2 ...]
        [--variant "CHURNWATCH_KEY=VALUE ..."] [--no-in-process] [--log-dir DIR] [--out-dir DIR]

Every ``--days-per-s`` value, for every ``--variant`` (worker settings; default: one run with
the defaults), runs one worker, one after the other, each on fresh servers.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import redis.asyncio as aioredis

from benchmarks import bench_telco_feed, report
from benchmarks.bench_e2e import scrape, stop_process, wait_for_group
from benchmarks.standard_producer import produce
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.infra.config import EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import worker_lag
from online_models.evaluate import roc_auc
from online_models.telco import T0_MS
from online_models.versions import ModelVersions

CODE_PATHS = (*bench_telco_feed.CODE_PATHS, "churnwatch/worker.py", "alerting",
              "benchmarks/bench_telco_worker.py")
SPREAD_DAYS, DELAY_MIN, DELAY_MAX = 90.0, 31.0, 60.0  # bench_telco_feed's defaults
KEEP_ENV = ("CHURNWATCH_REDIS_SERVER_BIN",)  # where binaries are, not settings
_encode = msgspec.json.Encoder().encode


def paced(events: Sequence[Event], days_per_s: float, clock: list[float]) -> Iterator[bytes]:
    """``events`` (in event-time order) as JSON, each when its event time is due: the first at
    once, then ``days_per_s`` days of event time per wall-clock second. ``clock`` gets the
    wall-clock start (``time.time``)."""
    t0 = time.perf_counter()
    clock[:] = [time.time()]
    base = events[0].ts
    for ev in events:
        wait = t0 + (ev.ts - base) / DAY_MS / days_per_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield _encode(ev)


def worker_env(bootstrap: str, redis_url: str, app_id: str, port: int, workdir: Path,
               extra: dict[str, str]) -> dict[str, str]:
    """The worker's environment: no CHURNWATCH_* setting of the caller's, the addresses and
    ports, score records on (``publish_scores``), then ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHURNWATCH_") or k in KEEP_ENV}
    env.update(CHURNWATCH_BROKER=f"kafka://{bootstrap}", CHURNWATCH_REDIS_URL=redis_url,
               CHURNWATCH_APP_ID=app_id, CHURNWATCH_METRICS_PORT=str(port),
               CHURNWATCH_WEB_ENABLED="false", CHURNWATCH_PUBLISH_SCORES="true",
               TMPDIR=str(workdir))
    env.update(extra)
    return env


async def read_scores(bootstrap: str) -> list[tuple[dict[str, Any], int]]:
    """Every score record on ``churn.scores`` with its record timestamp (wall ms)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from churnwatch.infra.kafka.offsets import high_watermarks

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(SCORES_TOPIC, p)
                 for p in consumer.partitions_for_topic(SCORES_TOPIC) or ()]
        consumer.assign(parts)
        ends = await high_watermarks(consumer, SCORES_TOPIC)
        await consumer.seek_to_beginning(*parts)
        out: list[tuple[dict[str, Any], int]] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(orjson.loads(r.value), r.timestamp) for r in records]
        return out
    finally:
        await consumer.stop()


async def versions_published(redis_url: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await ModelVersions(client).list()
    finally:
        await client.aclose()


async def _caught_up(bootstrap: str, app_id: str, proc: subprocess.Popen, log: Path,
                     timeout_s: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited:\n{log.read_text()[-3000:]}")
        if await worker_lag(bootstrap, app_id) == 0:
            return time.perf_counter() - t0
        await asyncio.sleep(0.5)
    raise SystemExit(f"the worker did not catch up in {timeout_s:.0f} s:\n"
                     f"{log.read_text()[-3000:]}")


def _metric(m: dict, family: str, **labels: str) -> int:
    return int(sum(v for name, lab, v in m.get(family, ()) if name.endswith("_total")
                   and all(lab.get(k) == x for k, x in labels.items())))


def worker_run(events: Sequence[Event], labels: dict[str, bool], days_per_s: float,
               extra: dict[str, str], workdir: Path) -> dict[str, Any]:
    """One worker on fresh servers, fed ``events`` at ``days_per_s``; its figures."""
    app_id = f"telco-{int(time.time() * 1000) % 10**8}"
    port = free_port()
    log = workdir / f"{app_id}.log"
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis:
        proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"],
                                env=worker_env(broker.bootstrap, redis.url, app_id, port,
                                               workdir, extra),
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            asyncio.run(wait_for_group(broker.bootstrap, app_id, proc))
            clock: list[float] = []
            delivery = produce(broker.bootstrap, EVENTS_TOPIC, paced(events, days_per_s, clock),
                               compression="lz4", key="normalised", timeout_s=300)
            fed_s = delivery.seconds
            drain_s = asyncio.run(_caught_up(broker.bootstrap, app_id, proc, log, 300))
            metrics = scrape(port)
            scores = asyncio.run(read_scores(broker.bootstrap))
            versions = asyncio.run(versions_published(redis.url))
        finally:
            stop_process(proc)
    figures = score_figures(events, labels, scores, versions, days_per_s)
    figures["versions"] = [[round(v.get("created_ms", 0) / 1000 - clock[0], 1),
                            v.get("positives", 0) + v.get("negatives", 0)] for v in versions]
    return {
        "days_per_s": days_per_s, "env": extra,
        "feed_seconds": round(fed_s, 1), "drain_after_feed_s": round(drain_s, 1),
        "messages": delivery.messages,
        "worker": {
            "labels_learned_churned": _metric(metrics, "churnwatch_model_labels",
                                              label="churn"),
            "labels_learned_active": _metric(metrics, "churnwatch_model_labels",
                                             label="active"),
            "examples_churned": _metric(metrics, "churnwatch_model_examples", label="churn"),
            "examples_active": _metric(metrics, "churnwatch_model_examples", label="active"),
            "snapshots_dropped": {labs["reason"]: int(v) for name, labs, v in
                                  metrics.get("churnwatch_model_snapshots_dropped", ())
                                  if name.endswith("_total")},
            "alerts": _metric(metrics, "churnwatch_alerts"),
            "versions_published": len(versions),
        },
        **figures,
    }


def score_figures(events: Sequence[Event], labels: dict[str, bool],
                  scores: list[tuple[dict[str, Any], int]], versions: list[dict[str, Any]],
                  days_per_s: float) -> dict[str, Any]:
    """Prequential ROC AUC of the profiles' score records (the first per profile event), and
    how old the newest version was when each was written (wall-clock seconds, and days of
    event time at the pace sent)."""
    first: dict[str, tuple[dict[str, Any], int]] = {}
    for record, wall_ms in scores:
        if record["event_id"].endswith("-profile"):
            first.setdefault(record["event_id"], (record, wall_ms))
    ids = sorted(first, key=lambda e: first[e][0]["ts"])
    ts = np.array([first[e][0]["ts"] for e in ids])
    score = np.array([first[e][0]["score"] for e in ids])
    y = np.array([labels[first[e][0]["subscriber_id"]] for e in ids])
    second = ts >= T0_MS + SPREAD_DAYS * DAY_MS / 2
    created = [v.get("created_ms", 0) for v in versions]
    learned = [v.get("positives", 0) + v.get("negatives", 0) for v in versions]
    age_s, known = [], []
    for e in ids:
        k = bisect.bisect_right(created, first[e][1]) - 1
        age_s.append((first[e][1] - created[k]) / 1000 if k >= 0 else np.nan)
        known.append(learned[k] if k >= 0 else 0)
    age = np.array(age_s)[second]
    return {
        "profiles_scored": len(ids), "profiles_sent": sum(ev.type == "profile" for ev in events),
        "scored_at_0_5": int(np.sum(score == 0.5)),
        "roc_auc_all": roc_auc(score, y),
        "roc_auc_second_half": roc_auc(score[second], y[second]),
        "second_half_profiles": int(second.sum()),
        "newest_version_second_half": {
            "age_s_median": round(float(np.nanmedian(age)), 1),
            "age_event_days_median": round(float(np.nanmedian(age)) * days_per_s, 1),
            "examples_learned_median": float(np.median(np.array(known)[second])),
            "basis": "the newest version published before each score record's timestamp (a "
                     "lower bound of the version's age: other workers than the learner's pick "
                     "a version up at their next 2 s poll)"},
    }


def run(csv_path: str, seed: int, paces: Sequence[float], variants: Sequence[dict[str, str]],
        in_process: bool, log_dir: str | None = None) -> dict[str, Any]:
    events, labels = bench_telco_feed.feed(csv_path, seed, SPREAD_DAYS, DELAY_MIN, DELAY_MAX)
    runs = []
    with tempfile.TemporaryDirectory(prefix="telco-worker-") as tmp:
        for extra in variants:
            for pace in paces:
                runs.append(worker_run(events, labels, pace, extra, Path(tmp)))
                if log_dir:  # the worker's log, kept
                    Path(log_dir).mkdir(parents=True, exist_ok=True)
                    for log in Path(tmp).glob("*.log"):
                        log.replace(Path(log_dir) / log.name)
                _print_run(runs[-1])
    out: dict[str, Any] = {
        "benchmark": "telco_worker", "created": report.utc_now(),
        "machine": report.machine_info(), "code_version": report.code_version(CODE_PATHS),
        "feed": {"customers": len(labels), "churned": int(sum(labels.values())),
                 "events": len(events), "seed": seed, "spread_days": SPREAD_DAYS,
                 "label_delay_days": [DELAY_MIN, DELAY_MAX],
                 "producer": "confluent-kafka, lz4, one event per message, keyed"},
        "worker_runs": runs,
    }
    if in_process:  # the same feed in-process (holdout: the production default, as the worker)
        base = bench_telco_feed.run(csv_path, seed, 500, 0.05, SPREAD_DAYS, DELAY_MIN,
                                    DELAY_MAX)
        out["in_process"] = {"holdout": 0.05, "batch": 500, **base["worker_scores"],
                             "evaluate_roc_auc_all": base["labels"]["evaluate_roc_auc_all"],
                             "evaluate_roc_auc_second_half":
                                 base["labels"]["evaluate_roc_auc_second_half"]}
        out["batch"] = base["batch"]
    return out


def _print_run(r: dict[str, Any]) -> None:
    v = r["newest_version_second_half"]
    report.note(f"{r['days_per_s']:g} days/s {r['env'] or 'defaults'}: ROC AUC "
                f"{r['roc_auc_all']:.3f} all / {r['roc_auc_second_half']:.3f} second half; "
                f"{r['scored_at_0_5']} at 0.50; newest version's age (median, second half) "
                f"{v['age_s_median']} s = {v['age_event_days_median']} event days; "
                f"{r['worker']}")


def _label(r: dict[str, Any]) -> str:
    settings = " ".join(f"{k}={v}" for k, v in r["env"].items()) or "defaults"
    return f"real worker, {r['days_per_s']:g} days/s, {settings}"


def _env(text: str) -> dict[str, str]:
    out = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("CHURNWATCH_"):
            raise SystemExit(f"--variant {item!r}: expected CHURNWATCH_KEY=VALUE")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_telco_worker",
                                description=__doc__.split("\n")[0])
    p.add_argument("--csv", default=os.environ.get("CHURNWATCH_TELCO_CSV"),
                   help="Telco-Customer-Churn.csv (default: $CHURNWATCH_TELCO_CSV)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days-per-s", type=float, nargs="+", default=[2.0],
                   help="event-time days sent per wall-clock second (one worker run each)")
    p.add_argument("--variant", action="append", default=None,
                   help="worker settings of one variant, \"CHURNWATCH_A=1 CHURNWATCH_B=2\" "
                        "(repeatable; default: one run with the defaults)")
    p.add_argument("--no-in-process", action="store_true",
                   help="skip the in-process replay and the batch baselines")
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--log-dir", default=None, help="keep the workers' logs there")
    a = p.parse_args(argv)
    if not a.csv or not Path(a.csv).is_file():
        raise SystemExit(f"{a.csv}: not found. Fix: pass --csv or set CHURNWATCH_TELCO_CSV")
    variants = [_env(v) for v in a.variant] if a.variant else [{}]
    result = run(a.csv, a.seed, a.days_per_s, variants, not a.no_in_process, a.log_dir)
    path = report.write_report("telco_worker", result, a.out_dir)
    rows = [[_label(r), f"{r['roc_auc_all']:.3f}", f"{r['roc_auc_second_half']:.3f}"]
            for r in result["worker_runs"]]
    if "in_process" in result:
        ip, b = result["in_process"], result["batch"]
        rows += [["in-process replay (streams/replay.py)", f"{ip['roc_auc_all']:.3f}",
                  f"{ip['roc_auc_second_half']:.3f}"],
                 ["churnwatch evaluate's figures on that replay",
                  f"{ip['evaluate_roc_auc_all']:.3f}",
                  f"{ip['evaluate_roc_auc_second_half']:.3f}"],
                 ["batch logistic regression, 5-fold CV", "{mean:.3f} ± {sd:.3f}".format(
                     **b["logistic_regression_5fold"]), "—"],
                 ["batch gradient boosting, 5-fold CV", "{mean:.3f} ± {sd:.3f}".format(
                     **b["gradient_boosting_5fold"]), "—"]]
    report.print_table("Telco feed through a real worker: prequential ROC AUC of its score "
                       "records on profiles", ["run", "all profiles", "second half"], rows)
    report.note(f"report: {path}")
    return result


if __name__ == "__main__":
    main()
