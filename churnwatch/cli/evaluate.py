"""`churnwatch evaluate`: the model's prequential quality on an event file, measured on the
worker's own path (``streams.replay``: the real pipeline, silence sweep and fleet learner on
a temporary redis-server)."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from churnwatch.cli.common import ConfigOpt, JsonOpt, err, fail, load
from churnwatch.core.errors import ChurnwatchError
from churnwatch.infra.config import Settings


def evaluate_file(lines: list[bytes], settings: Settings, *, threshold: float = 0.5,
                  bins: int = 10, batch: int = 500, holdout: float = 1.0,
                  sweep_every_days: float | None = 0.0) -> dict[str, Any]:
    """Replay ``lines`` through the pipeline, the silence sweep and the learner on an
    embedded redis-server, with the label policy, silence settings, ruleset and playbook of
    ``settings``; the quality report. ``sweep_every_days``: event time between sweeps of a
    partition (0: after every batch, as a worker fed in real time; ``None``: no sweep)."""
    if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise ValueError("threshold must be within [0, 1]")
    if bins < 1 or batch < 1:
        raise ValueError("bins and batch must be at least 1")
    if sweep_every_days is not None and not sweep_every_days >= 0:
        raise ValueError("sweep_every_days must be at least 0 (None: no sweep)")
    from alerting.playbook import load_playbook
    from churnwatch.core.units import DAY_MS
    from churnwatch.dev.embedded import EmbeddedRedis
    from churnwatch.infra.redis.connect import connect
    from churnwatch.infra.sections import Sections
    from features.silence import SilenceIndex
    from online_models.snapshots import LabelPolicy
    from rules.engine import compile_ruleset
    from rules.ruleset import load_ruleset
    from streams.replay import records, replay, report

    sections = Sections.of(settings)
    lab, quiet = sections.labels, sections.silence
    silence = SilenceIndex(quiet_ms=quiet.quiet_ms, every_ms=quiet.every_ms)
    sweep_every_ms = None if sweep_every_days is None else int(sweep_every_days * DAY_MS)
    policy = LabelPolicy(horizon_ms=lab.horizon_ms, every_ms=lab.every_ms,
                         lateness_ms=lab.lateness_ms, exclusion_ms=lab.exclusion_ms,
                         history_ms=lab.history_ms, max_labels=lab.max_labels)
    rules = compile_ruleset(load_ruleset(settings.rules_file))
    playbook = load_playbook(settings.playbook_file)
    feed = records(lines)

    async def run(url: str):  # type: ignore[no-untyped-def]
        client = connect(settings.model_copy(update={"redis_url": url, "redis_cluster": False}))
        try:
            return await replay(client, feed, batch=batch, holdout=holdout, policy=policy,
                                rules=rules, playbook=playbook, silence=silence,
                                sweep_every_ms=sweep_every_ms, sweep_page=quiet.page)
        finally:
            await client.aclose()

    with EmbeddedRedis(appendfsync="no") as server:
        return report(asyncio.run(run(server.url)), threshold, bins)


def evaluate_command(
    file: Annotated[Path, typer.Argument(help="NDJSON events with churn/active labels "
                                              "('-' for stdin)")],
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0,
                                             help="score at or above which churn is predicted")]
    = 0.5,
    bins: Annotated[int, typer.Option(min=1, max=1000, help="calibration bins")] = 10,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="events per pipeline batch "
                                       "(the learner publishes after each)")] = 500,
    holdout: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of alerted "
                                           "subscribers not acted on (1: nobody is treated, "
                                           "so no label is hidden by an action)")] = 1.0,
    sweep_every_days: Annotated[float, typer.Option(
        min=0.0, max=3650.0, help="event-time days between silence sweeps of a partition (0: "
        "after every batch, as a worker fed in real time; a worker fed N days of events a "
        "second sweeps every silence_interval_s x N)")] = 0.0,
    sweep: Annotated[bool, typer.Option("--sweep/--no-sweep", help="run the silence sweep "
                                        "(re-scores of quiet subscribers)")] = True,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Prequential quality of the online model on an event file, on the worker's own path:
    the events go in file order through the pipeline (feature store, rules, snapshots, labels),
    the silence sweep (on event time) and the fleet learner on a temporary redis-server, and
    each learned label is compared with the score the worker published for its snapshot (no
    Kafka; the configured Redis is not touched)."""
    settings = load(config)
    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
        with stream:
            lines = stream.read().splitlines()
        report = evaluate_file(lines, settings, threshold=threshold, bins=bins, batch=batch,
                               holdout=holdout,
                               sweep_every_days=sweep_every_days if sweep else None)
    except (OSError, ChurnwatchError) as exc:
        raise fail(exc) from None
    if json_out:
        print(orjson.dumps(report).decode())
        return
    _print(report, threshold)


def _print(report: dict[str, Any], threshold: float) -> None:
    from rich.table import Table

    def fmt(value: object, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    ev, overall, second = report["events"], report["overall"], report["second_half"]
    learned = report["labels_learned"]
    err.print(f"events applied {ev['applied']}  duplicate {ev['duplicate']}  late {ev['late']}  "
              f"invalid {ev['invalid']}  model {report['model_version']}  labels learned "
              f"{learned['churned']} churned / {learned['active']} active")
    if not overall["n"]:
        err.print("[yellow]no label joined a scored snapshot: nothing to evaluate[/]")
        return
    table = Table(title="prequential evaluation (the worker's score of each event's snapshot, "
                        f"before its label was learned) at threshold {threshold:g}")
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
    if report["examples_of_sweeps"]:
        both = report["all_learned"]
        err.print(f"also learned: {report['examples_of_sweeps']} labels on silence re-scores "
                  f"(quiet subscribers swept); with them: ROC AUC "
                  f"{fmt(both['overall']['roc_auc'])} over {both['overall']['n']} labels, "
                  f"{fmt(both['second_half']['roc_auc'])} over the second half")
    calib = Table(title="calibration (all labels)")
    for column in ("bin", "count", "mean predicted", "observed rate"):
        calib.add_column(column, justify="right")
    for row in overall["calibration"]:
        close = "]" if row["hi"] >= 1.0 else ")"
        calib.add_row(f"[{row['lo']:.2f}, {row['hi']:.2f}{close}", str(row["count"]),
                      fmt(row["mean_predicted"], 3), fmt(row["observed_rate"], 3))
    err.print(calib)
