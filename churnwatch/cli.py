"""The `churnwatch` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from churnwatch.config import EVENTS_TOPIC, Settings, load_settings
from churnwatch.errors import ChurnwatchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Real-time churn early warning for telecom operators.")
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file "
                                                   "(or CHURNWATCH_CONFIG)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ChurnwatchError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _with_redis(settings: Settings, work):  # type: ignore[no-untyped-def]
    """Run ``work(client)`` (a coroutine function) with a redis.asyncio client; errors exit 1."""
    import redis.asyncio as aioredis

    async def main():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except ChurnwatchError as exc:
        raise _fail(exc) from None


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


@app.command()
def demo(
    subscribers: Annotated[int, typer.Option(help="synthetic population size")] = 1000,
    days: Annotated[int, typer.Option(help="days of telemetry to simulate")] = 150,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    churn_rate: Annotated[float, typer.Option(help="share of subscribers who churn")] = 0.08,
    faults: Annotated[bool, typer.Option(help="inject duplicates, late and invalid events")] = True,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Start a local broker and Redis (unless configured), a worker and a synthetic feed;
    show alerts live and end with a summary."""
    from churnwatch.demo import DemoOptions, run_demo

    settings = _settings(config)
    options = DemoOptions(subscribers=subscribers, days=days, seed=seed, churn_rate=churn_rate,
                          faults=faults, json_output=json_out)
    try:
        summary = run_demo(settings, options)
    except ChurnwatchError as exc:
        raise _fail(exc) from None
    if json_out:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="~300 subscribers x 60 days, short "
                                        "latency window, naive capped at 25 s (< 2 minutes)")]
    = False,
    subscribers: Annotated[Optional[int], typer.Option(help="simulated population "
                                                       "(default 1000; quick 300)")] = None,
    days: Annotated[Optional[int], typer.Option(help="days simulated (default 150; quick 60)")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """End-to-end benchmark on a local broker and Redis: churnwatch's sustained events/s and
    event-to-alert latency, and the naive per-event Faust design on the same feed (ratio)."""
    from benchmarks import bench_e2e

    argv = ["--quick"] if quick else []
    if subscribers is not None:
        argv += ["--subscribers", str(subscribers)]
    if days is not None:
        argv += ["--days", str(days)]
    if json_out:
        argv.append("--json")
    try:
        bench_e2e.main(argv)
    except ChurnwatchError as exc:
        raise _fail(exc) from None


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run a stream worker against the configured Kafka and Redis."""
    from churnwatch.embedded import create_topics
    from streams.app import create_app

    settings = _settings(config)
    try:
        app_ = create_app(settings)
        asyncio.run(create_topics(settings.bootstrap, _topics(settings)))
    except ChurnwatchError as exc:
        raise _fail(exc) from None
    import faust

    faust.Worker(app_, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


def _topics(settings: Settings) -> dict[str, int]:
    from churnwatch.config import ALERTS_TOPIC, DLQ_TOPIC, SCORES_TOPIC

    return {t: settings.partitions for t in (EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="NDJSON file of events ('-' for stdin)")],
    per_message: Annotated[int, typer.Option(help="events packed per Kafka message")] = 500,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Push an NDJSON event file into churn.events."""
    from churnwatch.embedded import create_topics
    from churnwatch.produce import EventProducer

    settings = _settings(config)
    if not settings.broker:
        raise _fail(ChurnwatchError("set CHURNWATCH_BROKER (e.g. kafka://127.0.0.1:9092)"))
    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except OSError as exc:
        raise _fail(exc) from None

    async def main() -> int:
        await create_topics(settings.bootstrap, _topics(settings))
        async with EventProducer(settings.bootstrap, EVENTS_TOPIC, settings.partitions,
                                 per_message) as producer:
            with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed} events"),
                          TimeElapsedColumn(), console=err, disable=json_out) as bar:
                task = bar.add_task("replay", total=None)
                return await producer.send_lines(stream, lambda n: bar.advance(task, n))

    with stream:
        try:
            sent = asyncio.run(main())
        except ChurnwatchError as exc:
            raise _fail(exc) from None
    if json_out:
        print(orjson.dumps({"sent": sent, "topic": EVENTS_TOPIC}).decode())
    else:
        err.print(f"sent {sent} events to {EVENTS_TOPIC}")


@app.command()
def ingest(
    host: Annotated[Optional[str], typer.Option(help="bind address (CHURNWATCH_INGEST_HOST, "
                                                     "default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (CHURNWATCH_INGEST_PORT, default "
                                                     "8080)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP ingest (POST /v1/events) in its own process, separate from the workers,
    so it scales independently and a slow pipeline never blocks HTTP."""
    import logging

    from streams.ingest import serve

    settings = _settings(config, ingest_host=host, ingest_port=port)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings))
    except ChurnwatchError as exc:
        raise _fail(exc) from None


@app.command()
def send(
    file: Annotated[Path, typer.Argument(help="NDJSON file of events ('-' for stdin)")],
    url: Annotated[str, typer.Option(help="ingest URL, e.g. http://127.0.0.1:8080")],
    token: Annotated[str, typer.Option(envvar="CHURNWATCH_SEND_TOKEN", show_envvar=True,
                                       help="bearer token of the feed")],
    batch: Annotated[int, typer.Option(min=1, max=1_000_000, help="events per request")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="requests in flight (above 1, "
                                             "batches may arrive out of order)")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Post an NDJSON event file to `churnwatch ingest` in batches, retrying 429/503."""
    from churnwatch.send import send_stream

    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except OSError as exc:
        raise _fail(exc) from None

    async def main():  # type: ignore[no-untyped-def]
        with Progress(TextColumn("send"), BarColumn(), TextColumn("{task.completed} events"),
                      TimeElapsedColumn(), console=err, disable=json_out) as bar:
            task = bar.add_task("send", total=None)
            return await send_stream(stream, url, token, batch=batch, concurrency=concurrency,
                                     progress=lambda n: bar.advance(task, n))

    with stream:
        try:
            report = asyncio.run(main())
        except ChurnwatchError as exc:
            raise _fail(exc) from None
    if json_out:
        print(orjson.dumps(report.as_dict()).decode())
        return
    err.print(f"sent {report.events} events in {report.batches} requests: accepted "
              f"{report.accepted}, rejected {report.rejected}, retries {report.retries} "
              f"({report.elapsed_s:.1f} s)")
    for item in report.rejections[:20]:
        err.print(f"  line {item['line']}: {item['reason']}")


@app.command()
def inspect(
    subscriber: Annotated[str, typer.Argument(help="phone number or subscriber id")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Features, indicators, segment, score and recent alerts of one subscriber."""

    from churnwatch.inspect import inspect_subscriber

    settings = _settings(config)
    if not settings.redis_url:
        raise _fail(ChurnwatchError("set CHURNWATCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"))

    report = _with_redis(settings, lambda client: inspect_subscriber(settings, client, subscriber))
    if json_out:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    from churnwatch.render import render_inspect

    render_inspect(Console(), report)


@app.command()
def evaluate(
    file: Annotated[Path, typer.Argument(help="NDJSON events with churn/active labels "
                                              "('-' for stdin)")],
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0,
                                             help="score at or above which churn is predicted")]
    = 0.5,
    bins: Annotated[int, typer.Option(min=1, max=1000, help="calibration bins")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Prequential quality of the online model on an event file: at each label it scores
    first, then learns (no Kafka/Redis)."""
    from online_models.evaluate import evaluate as run_evaluation

    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
        with stream:
            report = run_evaluation(stream, threshold=threshold, bins=bins)
    except OSError as exc:
        raise _fail(exc) from None
    if json_out:
        print(orjson.dumps(report).decode())
        return
    from rich.table import Table

    def fmt(value: object, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    ev, overall, second = report["events"], report["overall"], report["second_half"]
    err.print(f"events applied {ev['applied']}  duplicate {ev['duplicate']}  late {ev['late']}  "
              f"invalid {ev['invalid']}  model {report['model_version']}")
    if not overall["n"]:
        err.print("[yellow]no churn/active label events: nothing to evaluate[/]")
        return
    table = Table(title=f"prequential evaluation (score, then learn) at threshold {threshold:g}")
    table.add_column("metric")
    table.add_column("all labels", justify="right")
    table.add_column(f"second half (from #{second['from_label'] + 1})", justify="right")
    for label, key in (("labels", "n"), ("churned", "positives")):
        table.add_row(label, str(overall[key]), str(second[key]))
    for label, key in (("ROC AUC", "roc_auc"), ("log loss", "log_loss"), ("Brier", "brier"),
                       ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
                       ("precision@k (k = churned)", "precision_at_k"), ("ECE", "ece")):
        table.add_row(label, fmt(overall[key]), fmt(second[key]))
    err.print(table)
    calib = Table(title="calibration (all labels)")
    for column in ("bin", "count", "mean predicted", "observed rate"):
        calib.add_column(column, justify="right")
    for row in overall["calibration"]:
        close = "]" if row["hi"] >= 1.0 else ")"
        calib.add_row(f"[{row['lo']:.2f}, {row['hi']:.2f}{close}", str(row["count"]),
                      fmt(row["mean_predicted"], 3), fmt(row["observed_rate"], 3))
    err.print(calib)


rules_app = typer.Typer(no_args_is_help=True, help="Check, try and publish rulesets.")
app.add_typer(rules_app, name="rules")


def _load_rules(file: Path):  # type: ignore[no-untyped-def]
    from rules.engine import compile_ruleset
    from rules.ruleset import load_ruleset

    try:
        return compile_ruleset(load_ruleset(file))
    except ChurnwatchError as exc:
        raise _fail(exc) from None


@rules_app.command("check")
def rules_check(file: Annotated[Path, typer.Argument(help="rules TOML")],
                json_out: JsonOpt = False) -> None:
    """Validate and compile a ruleset."""
    compiled = _load_rules(file)
    rs = compiled.ruleset
    info = {"file": str(file), "version": rs.version, "indicators": [i.name for i in rs.indicators],
            "rules": [r.id for r in rs.rules], "segments": list(rs.segment_names)}
    if json_out:
        print(orjson.dumps(info).decode())
    else:
        err.print(f"[green]ok[/] {file}: version {rs.version}, {len(rs.indicators)} indicators, "
                  f"{len(rs.rules)} rules, {len(rs.segments)} segments")


@rules_app.command("test")
def rules_test(file: Annotated[Path, typer.Argument(help="rules TOML")],
               events: Annotated[Path, typer.Argument(help="NDJSON events")],
               json_out: JsonOpt = False) -> None:
    """Show what a ruleset would raise on an event file, without acting (no Kafka/Redis)."""
    from rules.dryrun import dry_run

    compiled = _load_rules(file)
    try:
        with events.open("rb") as fh:
            report = dry_run(compiled, fh)
    except OSError as exc:
        raise _fail(exc) from None
    if json_out:
        print(orjson.dumps(report).decode())
        return
    for alert in report["alerts"]:
        err.print(f"line {alert['line']}: {alert['severity']:<6} {alert['subscriber_id']} "
                  f"rules {','.join(alert['rules'])} indicators {','.join(alert['indicators'])}")
    err.print(f"events {report['events']}  rule hits {report['rule_hits']}  "
              f"alerts {len(report['alerts'])}")


@rules_app.command("push")
def rules_push(file: Annotated[Path, typer.Argument(help="rules TOML")],
               config: ConfigOpt = None) -> None:
    """Validate and publish a ruleset; running workers switch to it within seconds."""

    from rules.registry import publish

    settings = _settings(config)
    if not settings.redis_url:
        raise _fail(ChurnwatchError("set CHURNWATCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"))
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(exc) from None

    ruleset = _with_redis(settings, lambda client: publish(client, text, str(file)))
    err.print(f"published ruleset {ruleset.version} from {file}")


dnc_app = typer.Typer(no_args_is_help=True, help="The do-not-contact list (workers reload it "
                      "every 10 s): contact actions are withheld, internal ones still run.")
app.add_typer(dnc_app, name="dnc")


def _dnc(config: Path | None, op: str, subscribers: list[str]) -> list[str]:
    import redis

    from churnwatch.events import normalise_subscriber
    from churnwatch.keys import Keys

    settings = _settings(config)
    if not settings.redis_url:
        raise _fail(ChurnwatchError("set CHURNWATCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"))
    try:
        ids = [normalise_subscriber(s) for s in subscribers]
    except ChurnwatchError as exc:
        raise _fail(exc) from None
    client = redis.Redis.from_url(settings.redis_url)
    key = Keys().do_not_contact()
    if op == "add" and ids:
        client.sadd(key, *ids)
    elif op == "remove" and ids:
        client.srem(key, *ids)
    return sorted(m.decode() for m in client.smembers(key))


@dnc_app.command("add")
def dnc_add(subscribers: Annotated[list[str], typer.Argument(help="phone numbers or ids")],
            config: ConfigOpt = None) -> None:
    """Add subscribers to the do-not-contact list."""
    err.print(f"do-not-contact list: {len(_dnc(config, 'add', subscribers))} subscribers")


@dnc_app.command("remove")
def dnc_remove(subscribers: Annotated[list[str], typer.Argument(help="phone numbers or ids")],
               config: ConfigOpt = None) -> None:
    """Remove subscribers from the do-not-contact list."""
    err.print(f"do-not-contact list: {len(_dnc(config, 'remove', subscribers))} subscribers")


@dnc_app.command("list")
def dnc_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Print the do-not-contact list."""
    members = _dnc(config, "list", [])
    print(orjson.dumps(members).decode() if json_out else "\n".join(members))


storm_app = typer.Typer(no_args_is_help=True, help="Alerts whose actions storm protection "
                        "holds: list, release (deliver the actions) or discard them.")
app.add_typer(storm_app, name="storm")


def _storm_redis(config: Path | None):  # type: ignore[no-untyped-def]
    import redis

    settings = _settings(config)
    if not settings.redis_url:
        raise _fail(ChurnwatchError("set CHURNWATCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"))
    return redis.Redis.from_url(settings.redis_url)


@storm_app.command("list")
def storm_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Held alerts per rule."""
    from churnwatch.keys import Keys

    client = _storm_redis(config)
    prefix = Keys().held("")
    held = {key.decode()[len(prefix):]: client.llen(key)
            for key in client.scan_iter(f"{prefix}*")}
    print(orjson.dumps(held).decode() if json_out else
          "\n".join(f"{rule}: {n} held" for rule, n in sorted(held.items())) or "nothing held")


@storm_app.command("release")
def storm_release(rule: Annotated[str, typer.Argument(help="rule id")],
                  config: ConfigOpt = None) -> None:
    """Hand a rule's held alerts to the workers, which deliver their actions."""
    from churnwatch.keys import Keys

    client, keys = _storm_redis(config), Keys()
    moved = 0
    while client.lmove(keys.held(rule), keys.released(), "LEFT", "RIGHT") is not None:
        moved += 1
    err.print(f"released {moved} held alerts of {rule}")


@storm_app.command("discard")
def storm_discard(rule: Annotated[str, typer.Argument(help="rule id")],
                  config: ConfigOpt = None) -> None:
    """Drop a rule's held alerts: their actions are never performed."""
    from churnwatch.keys import Keys

    client, keys = _storm_redis(config), Keys()
    count = client.llen(keys.held(rule))
    client.delete(keys.held(rule))
    err.print(f"discarded {count} held alerts of {rule}")


def main() -> None:
    app()
