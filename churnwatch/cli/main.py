"""The `churnwatch` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console

from churnwatch.cli.bench import register as register_bench
from churnwatch.cli.common import (
    ConfigOpt,
    JsonOpt,
    VersionOpt,
    err,
    event_progress,
    fail,
    load,
    redis_error_line,
    require_redis,
    with_redis,
)
from churnwatch.cli.effect import effect_command
from churnwatch.cli.evaluate import evaluate_command
from churnwatch.cli.model import model_app
from churnwatch.cli.ops import broker_app, dnc_app, rules_app, storm_app
from churnwatch.core.errors import ChurnwatchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Real-time churn early warning for telecom operators.")
app.add_typer(rules_app, name="rules")
app.add_typer(dnc_app, name="dnc")
app.add_typer(storm_app, name="storm")
app.add_typer(model_app, name="model")
app.add_typer(broker_app, name="broker")
app.command("effect")(effect_command)
app.command("evaluate")(evaluate_command)
register_bench(app)


@app.callback()
def _options(version: VersionOpt = False) -> None:
    """Real-time churn early warning for telecom operators."""


@app.command("settings-doc")
def settings_doc(
    path: Annotated[Path, typer.Argument(help="where the page goes")] = Path("docs/settings.md"),
    check: Annotated[bool, typer.Option("--check", help="only check that the page is current "
                                        "(exit 1 if not)")] = False,
) -> None:
    """Write the reference of every setting (docs/settings.md), generated from the code."""
    from churnwatch.cli import settings_doc as doc

    if check:
        if doc.stale(path):
            raise fail(ChurnwatchError(f"{path} differs from the settings the code declares. "
                                       "Fix: run `churnwatch settings-doc` and commit the page"))
        return
    doc.write(path)


@app.command("schemas")
def schemas(
    docs: Annotated[Path, typer.Argument(help="the docs directory (schemas/ and openapi/ go "
                                          "under it)")] = Path("docs"),
    check: Annotated[bool, typer.Option("--check", help="only check that the files are "
                                        "current (exit 1 if not)")] = False,
) -> None:
    """Write the JSON Schemas (events, alerts, score records, webhook and error bodies) and
    the OpenAPI documents (ingest, web API), generated from the code."""
    from churnwatch.cli import schemas as gen

    if check:
        stale = gen.stale(docs)
        if stale:
            raise fail(ChurnwatchError(f"{', '.join(str(docs / n) for n in stale)} differ from "
                                       "the code. Fix: run `churnwatch schemas` and commit them"))
        return
    for path in gen.write(docs):
        typer.echo(path)


@app.command()
def demo(
    subscribers: Annotated[int, typer.Option(help="synthetic population size")] = 1000,
    days: Annotated[int, typer.Option(help="days of telemetry to simulate")] = 150,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
    churn_rate: Annotated[float, typer.Option(help="share of subscribers who churn")] = 0.08,
    faults: Annotated[bool, typer.Option(help="inject duplicates, late and invalid events")] = True,
    keep_serving: Annotated[bool, typer.Option(help="after the summary, keep the worker and the "
                                               "retention team's page running until Ctrl-C")]
    = False,
    warm_start: Annotated[bool, typer.Option(help="start from the shipped model trained on "
                                             "the simulator (another seed); off: from an "
                                             "empty model, as a new deployment")] = True,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Start a local broker and Redis (unless configured), a worker and a synthetic feed;
    show alerts live and end with a summary."""
    from churnwatch.demo import DemoOptions, run_demo

    settings = load(config)
    options = DemoOptions(subscribers=subscribers, days=days, seed=seed, churn_rate=churn_rate,
                          faults=faults, json_output=json_out, keep_serving=keep_serving,
                          warm_start=warm_start)
    try:
        summary = run_demo(settings, options)
    except ChurnwatchError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: everything the demo started is stopped
        err.print("demo stopped")
        raise typer.Exit(130) from None
    if json_out:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run a stream worker against the configured Kafka and Redis."""
    from churnwatch.infra.runtime import allocator

    settings = load(config, service=True)
    allocator.limit_arenas(settings.malloc_arena_max)  # before the imports below start threads
    from churnwatch.infra.kafka.broker_guard import (
        EXIT_CODE,
        BrokerResetError,
        check_at_startup,
    )
    from churnwatch.infra.kafka.topics import ensure_topics
    from churnwatch.infra.runtime import gc_tuning, memtrace
    from churnwatch.worker import create_app

    try:
        if settings.broker and settings.redis_url:  # else create_app says what is missing
            asyncio.run(check_at_startup(settings))  # before ensure_topics recreates a topic
        app_ = create_app(settings)
        asyncio.run(ensure_topics(settings))
    except BrokerResetError as exc:
        fail(exc)
        raise typer.Exit(EXIT_CODE) from None
    except ChurnwatchError as exc:
        raise fail(exc) from None
    import faust

    gc_tuning.tune()  # full collections of the heap were the p99 latency tail
    allocator.fix_mmap_threshold(settings.malloc_mmap_threshold_kb * 1024)  # RSS creep
    try:
        memtrace.start(settings.memtrace_file, settings.memtrace_interval_s)  # off by default
    except ChurnwatchError as exc:
        raise fail(exc) from None
    # logging stays as load() configured it (JSON or readable, redacted); no spinner codes
    runner = faust.Worker(app_, loglevel=settings.log_level.upper(), quiet=True,
                          override_logging=False)
    runner.spinner = None
    try:
        runner.execute_from_commandline()
    except SystemExit:
        if getattr(app_, "churnwatch_exit_code", None):  # a broker reset, a Redis refusal
            raise SystemExit(app_.churnwatch_exit_code) from None
        raise


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="NDJSON file of events ('-' for stdin)")],
    per_message: Annotated[int, typer.Option(help="events packed per Kafka message")] = 500,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Push an NDJSON event file into churn.events."""
    from churnwatch.infra.kafka.auth import client_options
    from churnwatch.infra.kafka.produce import EventProducer
    from churnwatch.infra.kafka.topics import TopicNames, ensure_topics

    settings = load(config)
    if not settings.broker:
        raise fail(ChurnwatchError("set CHURNWATCH_BROKER (e.g. kafka://127.0.0.1:9092)"))
    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except OSError as exc:
        raise fail(exc) from None
    topic = TopicNames.of(settings).events

    async def main() -> int:
        await ensure_topics(settings)
        async with EventProducer(settings.bootstrap, topic, settings.partitions, per_message,
                                 client_options(settings)) as producer:
            with event_progress("replay", quiet=json_out) as bar:
                task = bar.add_task("replay", total=None)
                return await producer.send_lines(stream, lambda n: bar.advance(task, n))

    with stream:
        try:
            sent = asyncio.run(main())
        except ChurnwatchError as exc:
            raise fail(exc) from None
    if json_out:
        print(orjson.dumps({"sent": sent, "topic": topic}).decode())
    else:
        err.print(f"sent {sent} events to {topic}")


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
    from streams.ingest import serve

    settings = load(config, service=True, ingest_host=host, ingest_port=port)
    try:
        asyncio.run(serve(settings))
    except ChurnwatchError as exc:
        raise fail(exc) from None


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
    from churnwatch.cli.send import send_stream

    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
    except OSError as exc:
        raise fail(exc) from None

    async def main():  # type: ignore[no-untyped-def]
        with event_progress("send", quiet=json_out) as bar:
            task = bar.add_task("send", total=None)
            return await send_stream(stream, url, token, batch=batch, concurrency=concurrency,
                                     progress=lambda n: bar.advance(task, n))

    with stream:
        try:
            report = asyncio.run(main())
        except ChurnwatchError as exc:
            raise fail(exc) from None
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

    settings = load(config)
    require_redis(settings)

    report = with_redis(settings, lambda client: inspect_subscriber(settings, client, subscriber))
    if json_out:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    from churnwatch.cli.render import render_inspect

    render_inspect(Console(), report)


def main() -> None:
    from churnwatch.infra.runtime import kernel_cache

    kernel_cache.configure()  # before any kernel is imported (churnwatch/infra/runtime/kernel_cache.py)
    try:
        app()
    except Exception as exc:  # Redis refusing a command's connection: one line, no traceback
        line = redis_error_line(exc)
        if line is None:
            raise
        err.print(f"[red]error:[/] {line}")
        raise SystemExit(1) from None
