"""`churnwatch demo`: the whole engine on this machine with a synthetic telemetry feed.

Starts the embedded broker and redis-server unless configured, creates the topics, runs a
real `churnwatch worker` process (serving the retention team's page, whose URL and token it
prints), streams the simulation into churn.events, prints alerts as they arrive on
churn.alerts, waits until the worker has committed every event, and summarises throughput,
alerts and their precision/recall against the simulation's truth (``keep_serving``: then
keeps the worker and its page up until Ctrl-C).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from churnwatch.cli.render import alert_line
from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.units import DAY_MS
from churnwatch.demo_model import install_warm_start, model_figures, read_scores
from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.dev.simulate import SimConfig, Simulation, Truth
from churnwatch.infra.config import Settings
from churnwatch.infra.kafka.auth import client_options
from churnwatch.infra.kafka.offsets import topic_size, worker_lag
from churnwatch.infra.kafka.produce import EventProducer
from churnwatch.infra.kafka.topics import TopicNames, ensure_topics
from churnwatch.infra.sections import Sections
from rules.ruleset import load_ruleset


@dataclass(frozen=True)
class DemoOptions:
    subscribers: int = 1000
    days: int = 150
    seed: int = 7
    churn_rate: float = 0.08
    faults: bool = True
    json_output: bool = False
    timeout_s: float = 900.0
    keep_serving: bool = False  # after the summary, keep the worker and its page up (Ctrl-C)
    warm_start: bool = True  # start from the shipped model trained on the generator


def run_demo(settings: Settings, options: DemoOptions) -> dict[str, Any]:
    """Run the demo end to end and return its summary (also printed unless json_output).

    SIGTERM stops it as Ctrl-C does: the worker, the embedded broker and redis-server are
    stopped and their temporary data removed (the ExitStack unwinds)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run_demo(settings, options)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _without_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(
        f":{parts.password}@", ":***@")))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_demo(settings: Settings, options: DemoOptions) -> dict[str, Any]:
    console = Console(stderr=options.json_output, quiet=options.json_output)
    with ExitStack() as stack:
        broker = settings.broker or stack.enter_context(EmbeddedBroker()).url
        # the embedded Redis requires a random password, as a production one should
        redis_url = settings.redis_url or stack.enter_context(
            EmbeddedRedis(password=secrets.token_urlsafe(18))).url
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="churnwatch-demo-")))
        alerts_path = settings.alerts_jsonl or workdir / "alerts.jsonl"
        metrics_port = free_port()
        web_port = free_port()
        web_token = settings.web_token.get_secret_value() or secrets.token_urlsafe(24)
        app_id = settings.app_id if settings.broker else "churnwatch-demo"
        settings = settings.model_copy(update={"broker": broker, "app_id": app_id})
        console.print(f"broker {broker}  redis {_without_password(redis_url)}  "
                      f"alerts → {alerts_path}")
        asyncio.run(ensure_topics(settings))
        if options.warm_start:
            _warm_start(console, settings, redis_url)
        scores_path = settings.scores_jsonl or workdir / "scores.jsonl"
        env = dict(os.environ, CHURNWATCH_BROKER=broker, CHURNWATCH_REDIS_URL=redis_url,
                   CHURNWATCH_ALERTS_JSONL=str(alerts_path), CHURNWATCH_APP_ID=app_id,
                   CHURNWATCH_SCORES_JSONL=str(scores_path),
                   CHURNWATCH_METRICS_PORT=str(metrics_port),
                   CHURNWATCH_WEB_ENABLED="true", CHURNWATCH_WEB_HOST="127.0.0.1",
                   CHURNWATCH_WEB_PORT=str(web_port), CHURNWATCH_WEB_TOKEN=web_token,
                   CHURNWATCH_PARTITIONS=str(settings.partitions))
        log_path = workdir / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"], env=env,
                                  stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
        stack.callback(_stop, worker)
        console.print(f"retention team's page: [bold]http://127.0.0.1:{web_port}/[/]\n"
                      f"  sign in with the token [bold]{web_token}[/]", soft_wrap=True)
        sim = Simulation(SimConfig(
            subscribers=options.subscribers, days=options.days, seed=options.seed,
            churn_rate=options.churn_rate,
            duplicate_rate=0.01 if options.faults else 0.0,
            invalid_rate=0.002 if options.faults else 0.0,
            out_of_order_rate=0.01 if options.faults else 0.0))
        try:
            run = asyncio.run(_drive(console, settings, sim, worker, options.timeout_s))
        except ChurnwatchError:
            console.print(f"[red]worker log tail:[/]\n{log_path.read_text()[-3000:]}")
            raise
        run["worker_metrics"] = _scrape(metrics_port)
        start_ms = int(sim.cfg.start.timestamp() * 1000)
        summary = _summarise(sim.truth, start_ms, run)
        summary["model"] = model_figures(
            sim.truth, start_ms, run["alerts"], load_ruleset(settings.rules_file),
            read_scores(Path(scores_path)), Sections.of(settings).labels.horizon_ms)
        _print_summary(console, summary)
        summary["web_url"] = f"http://127.0.0.1:{web_port}/"
        if options.keep_serving:
            _serve_until_interrupted(console, worker, summary["web_url"], web_token)
        return summary


def _warm_start(console: Console, settings: Settings, redis_url: str) -> None:
    """Install the shipped model as the first version (a store with a model is left as is)."""
    from churnwatch.infra.redis.connect import connect

    async def install() -> str | None:
        client = connect(settings.model_copy(update={"redis_url": redis_url}))
        try:
            return await install_warm_start(client)
        finally:
            await client.aclose()

    version = asyncio.run(install())
    console.print(f"model: warm start from version {version}, trained on the simulator "
                  "(another seed)" if version else
                  "model: the store already has a model version; scoring with it")


def _serve_until_interrupted(console: Console, worker: subprocess.Popen, url: str,
                             token: str) -> None:
    """Keep the worker (and its web page) running until Ctrl-C or until it exits."""
    console.print(f"the worker keeps running (Ctrl-C stops the demo): open [bold]{url}[/]\n"
                  f"  sign in with the token [bold]{token}[/]", soft_wrap=True)
    try:
        while worker.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


async def _drive(console: Console, settings: Settings, sim: Simulation,
                 worker: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    bootstrap, app_id, options = settings.bootstrap, settings.app_id, client_options(settings)
    topics = TopicNames.of(settings)
    alerts: list[dict] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_alerts(console, settings, alerts, stop))
    await _wait_for_group(bootstrap, app_id, worker, console, options)
    start = time.perf_counter()
    total = sim.truth.total_events
    with Progress(TextColumn("[bold]feed"), BarColumn(), TextColumn("{task.completed:,} events"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("feed", total=total)
        async with EventProducer(bootstrap, topics.events, settings.partitions,
                                 client_options=options) as producer:
            sent = await producer.send_events(sim.events(), lambda n: bar.advance(task, n))
    produced = time.perf_counter() - start
    deadline = time.monotonic() + timeout_s
    while await worker_lag(bootstrap, app_id, options, settings.topic_prefix) > 0:
        if worker.poll() is not None:
            raise ChurnwatchError("the worker exited before processing the feed")
        if time.monotonic() > deadline:
            raise ChurnwatchError(f"the worker did not catch up within {timeout_s:.0f} s")
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - start
    published = await topic_size(bootstrap, topics.alerts, options)
    for _ in range(100):  # let the watcher print every published alert
        if len(alerts) >= published:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await watcher
    return {"sent": sent, "produce_seconds": produced, "elapsed_seconds": elapsed,
            "alerts": alerts, "dead_letters": await topic_size(bootstrap, topics.dlq, options)}


async def _wait_for_group(bootstrap: str, app_id: str, worker: subprocess.Popen,
                          console: Console, options: dict[str, Any]) -> None:
    """Until the worker has joined its consumer group (startup compiles rules, joins)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        with console.status("starting worker (compiling rules, joining the group)…"):
            for _ in range(240):
                if worker.poll() is not None:
                    raise ChurnwatchError("the worker exited during startup")
                groups = await admin.describe_consumer_groups([app_id])
                if groups and groups[0].groups and groups[0].groups[0][2] == "Stable" \
                        and groups[0].groups[0][5]:
                    return
                await asyncio.sleep(0.5)
        raise ChurnwatchError("the worker did not join its consumer group within 120 s")
    finally:
        await admin.close()


async def _watch_alerts(console: Console, settings: Settings, out: list[dict],
                        stop: asyncio.Event) -> None:
    topic = TopicNames.of(settings).alerts
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                **client_options(settings))
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    alert = orjson.loads(record.value)
                    out.append(alert)
                    console.print(alert_line(alert))
    finally:
        await consumer.stop()


def _scrape(port: int) -> dict[str, float]:
    """Selected counters from the worker's /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "churnwatch_events":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"events_{sample.labels['outcome']}"
                    out[key] = out.get(key, 0) + sample.value
    return out


def _summarise(truth: Truth, start_ms: int, run: dict[str, Any]) -> dict[str, Any]:
    """Counts, throughput, and precision/recall of high alerts raised before the churn day
    ended, against the simulation's ground truth."""
    alerts = run["alerts"]
    churn_ms = {sid: start_ms + (day + 1) * DAY_MS for sid, day in truth.churn_day.items()}
    first_high: dict[str, int] = {}
    for a in alerts:
        if a["severity"] == "high":
            first_high[a["subscriber_id"]] = min(a["ts"], first_high.get(a["subscriber_id"], a["ts"]))
    caught = {s for s, ts in first_high.items() if s in truth.churners and ts <= churn_ms[s]}
    lead_days = [(churn_ms[s] - first_high[s]) / DAY_MS for s in caught]
    latency = [(a["detected_at"] - a["ingested_at"]) for a in alerts if a.get("ingested_at")]
    metrics = run["worker_metrics"]
    return {
        "events_sent": run["sent"],
        "events_applied": int(metrics.get("events_applied", 0)),
        "events_duplicate": int(metrics.get("events_duplicate", 0)),
        "events_late": int(metrics.get("events_late", 0)),
        "dead_letters": run["dead_letters"],
        "elapsed_seconds": round(run["elapsed_seconds"], 2),
        "events_per_second": round(run["sent"] / run["elapsed_seconds"]),
        "alerts": len(alerts),
        "alerts_by_severity": dict(Counter(a["severity"] for a in alerts)),
        "alerts_by_segment": dict(Counter(a["segment"] for a in alerts)),
        "alerts_by_rule": dict(Counter(",".join(a["rules"]) for a in alerts)),
        "actions_by_team": dict(Counter(x["team"] for a in alerts for x in a["actions"])),
        "subscribers": len(truth.segments),
        "churners": len(truth.churners),
        "high_risk_alerted": len(first_high),
        "high_risk_true_positives": len(caught),
        "precision": round(len(caught) / len(first_high), 3) if first_high else None,
        "recall": round(len(caught) / len(truth.churners), 3) if truth.churners else None,
        "median_lead_days": round(float(np.median(lead_days)), 1) if lead_days else None,
        "detection_latency_ms_p50": round(float(np.percentile(latency, 50)), 1) if latency else None,
        "detection_latency_ms_p99": round(float(np.percentile(latency, 99)), 1) if latency else None,
    }


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+}"


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    table = Table(title="churnwatch demo summary", show_header=False)
    rows = [
        ("events sent", f"{s['events_sent']:,}"),
        ("applied / duplicate / late", f"{s['events_applied']:,} / {s['events_duplicate']:,} / "
                                       f"{s['events_late']:,}"),
        ("dead letters", f"{s['dead_letters']:,}"),
        ("throughput", f"{s['events_per_second']:,} events/s over {s['elapsed_seconds']} s"),
        ("alerts", f"{s['alerts']} by severity {s['alerts_by_severity']}"),
        ("alerts by segment", str(s["alerts_by_segment"])),
        ("actions by team", str(s["actions_by_team"])),
        ("churners / high-risk alerted", f"{s['churners']} / {s['high_risk_alerted']}"),
        ("precision / recall (high, before churn)", f"{s['precision']} / {s['recall']}"),
        ("median warning lead time", f"{s['median_lead_days']} days before churn"),
        ("detection latency p50 / p99", f"{s['detection_latency_ms_p50']} / "
                                        f"{s['detection_latency_ms_p99']} ms"),
    ]
    m = s.get("model")
    if m:
        r, b, at = m["rules_only"], m["rules_and_model"], m["at_rules_precision"]
        auc = "–" if m["model_roc_auc"] is None else f"{m['model_roc_auc']:.3f}"
        rows += [
            ("model ROC AUC (its score records)", f"{auc} over {m['score_records']:,} scored "
                                                  f"events ({m['scored_at_0_5']:,} at 0.50)"),
            ("high: rules alone", f"precision {r['precision']} / recall {r['recall']} "
                                  f"({r['caught']} caught of {r['alerted']} alerted)"),
            ("high: rules + model", f"precision {b['precision']} / recall {b['recall']} "
                                    f"({b['caught']} caught of {b['alerted']} alerted)"),
            ("model adds (shipped rules)", f"recall {_signed(m['added_recall']['recall'])} at "
                                           f"precision {_signed(m['added_recall']['precision'])}"),
            ("model's rules (any severity)", f"precision {m['model_rules']['precision']} / "
                                             f"recall {m['model_rules']['recall']} "
                                             f"({m['model_alerts']} alerts)"),
            ("model adds at the rules' precision", f"+{at['added_churners']} churners, "
                                                   f"+{at['added_false_alarms']} false alarms: "
                                                   f"recall {at['recall']} (score ≥ "
                                                   f"{at['threshold']}, chosen on this run)"),
        ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
