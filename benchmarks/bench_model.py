"""Does the online model add recall to the rules at the same precision? (demo generator)

Replays the simulated operator (``churnwatch.dev.simulate``, the demo's feed) through the real
pipeline on its own ``redis-server`` (no Kafka): features, rules, delayed labels on stored
snapshots, and the fleet learner, stepped after every batch, publishing a version that the
pipeline switches to — the model scores every event with what it has learned from labels
resolved so far (prequential). Score records of every event give, per subscriber:

- rules only: a high-severity alert from the operators' rules (``seed_high_risk``; rules
  that read the model are left out) before the churn event;
- rules + model: the same, or a model score at or above a threshold once the model has
  learned ≥ 100 labels of each kind (the guard of the shipped model rules).

Precision and recall are per subscriber against the simulation's churners, as in the demo:
an alert on a churner before its churn event is a hit; any alert on anyone else is a false
alarm. The threshold is chosen on one half of the subscribers (by a hash of the id) as the
lowest one keeping precision at or above the rules' own, then both are reported on the other
half — nothing is tuned on the figures reported. On that half the report also gives what the
model added (churners, false alarms) and a bootstrap over its subscribers of the precision
and recall differences, since with a few dozen churners per half ±1 churner is noise: use
``--subscribers 5000`` (~200 churners a half, ~1.5 min) for figures that mean something.

``variants`` score the model alert other ways, from the same replay: the warm-up guard
(labels of each kind before the model may alert) and smoothing — the score must hold on
``run`` consecutive scored events, or on ``run`` consecutive days (each day's highest
score) — so one noisy event does not make a stayer a false alarm.

By default nobody gets a retention action (``--holdout 1``): the simulator's churners leave
whatever is done, so treating them would only hide their labels from the model
(`online_models.snapshots` excludes treated subscribers' snapshots). ``--holdout 0.05`` shows
how few positive labels the production default leaves when rules act on most churners.

    python -m benchmarks.bench_model [--subscribers 1000] [--days 150] [--seed 7]
        [--learning-rate R] [--save FILE.npz]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import msgspec
import numpy as np
import orjson
import redis as syncredis
import redis.asyncio as aioredis

from alerting.alert import Alert, ScoreRecord
from alerting.holdout import Holdout
from alerting.ledger import AlertLedger
from alerting.playbook import load_playbook
from benchmarks.model_alerts import (
    THRESHOLDS,
    Rows,
    ScoreLog,
    at_threshold,
    pr,
    with_model,
)
from churnwatch.core.events import Event, decode_payload
from churnwatch.core.keys import Keys
from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.runtime.metrics import Metrics
from features.codec import decode_states
from features.extension import split
from features.store import FeatureStore
from online_models.learner import Learner, ModelWatcher
from online_models.model import ChurnModel
from online_models.snapshots import LabelPolicy
from online_models.versions import ModelVersions
from rules.engine import compile_ruleset
from rules.ruleset import parse_ruleset
from streams.pipeline import Pipeline
from streams.records import Record

RULE_HIGH = "seed_high_risk"
ONE_INDICATOR = "single_indicator_watch"  # shadow in the shipped rules; made visible here
READY = 100  # labels of each kind before the model may alert (as the shipped model rules)
_scores = msgspec.json.Decoder(ScoreRecord)


class _Publisher:
    """Keeps the score records (:class:`ScoreLog`) and counts the alerts."""

    wants_scores = True

    def __init__(self, index: dict[str, int]) -> None:
        self.index = index
        self.log = ScoreLog()
        self.sent = 0

    async def dead_letters(self, payloads: list[bytes]) -> None:
        pass

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        self.sent += len(alerts)

    async def scores(self, payloads: list[bytes]) -> None:
        for raw in payloads:
            s = _scores.decode(raw)
            self.log.add(self.index[s.subscriber_id], s.ts, s.score, RULE_HIGH in s.rules,
                         ONE_INDICATOR in s.rules)


def _rules():  # type: ignore[no-untyped-def]
    """The shipped rules with the one-indicator watch rule acting (its hits then appear in the
    score records; with --holdout 1 nobody is acted on anyway)."""
    text = resources.files("rules").joinpath("default.toml").read_text()
    head, sep, tail = text.partition(f"[rules.{ONE_INDICATOR}]")
    return compile_ruleset(parse_ruleset(head + sep + tail.replace("shadow = true", "", 1),
                                         "rules/default.toml (watch rule acting)"))


def _half(sid: str) -> int:
    return hashlib.blake2b(sid.encode(), digest_size=1).digest()[0] & 1


async def _replay(url: str, events: list[Event], holdout: float, batch: int,
                  policy: LabelPolicy, population: Sequence[str],
                  model_factory: Callable[[], ChurnModel] = ChurnModel,
                  ) -> tuple[_Publisher, dict[str, Any], dict[str, Any]]:
    client = aioredis.Redis.from_url(url)
    metrics = Metrics()
    pipeline = Pipeline(FeatureStore(client), AlertLedger(client),
                        _rules(), model_factory(), load_playbook(), metrics,
                        labels=policy, holdout=Holdout(holdout))
    versions = ModelVersions(client)
    learner = Learner(client, versions, metrics, "bench", publish_every_s=0.0,
                      model_factory=model_factory)
    watcher = ModelWatcher(versions, pipeline.switch_model)
    publisher = _Publisher({sid: k for k, sid in enumerate(population)})
    started = time.perf_counter()
    offset = 0
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        records = [Record("churn.events", 0, offset + j // 200,
                          msgspec.json.encode(chunk[j:j + 200]))
                   for j in range(0, len(chunk), 200)]
        offset += len(records)
        await pipeline.run(records, publisher)
        await learner.step(publish=True)
        await watcher.poll()
        publisher.log.counts.append(pipeline.model.label_counts())
    elapsed = time.perf_counter() - started
    # at the end of the run every subscriber still holds the snapshots of its last horizon
    # (nothing closes the run), as a live deployment does at any time
    memory = _memory(url, population)
    quality = learner.quality.snapshot()
    registry = metrics.registry

    def total(name: str, **labels: str) -> int:
        return int(registry.get_sample_value(name, labels or None) or 0)

    counts = {
        "examples_positive": total("churnwatch_model_examples_total", label="churn"),
        "examples_negative": total("churnwatch_model_examples_total", label="active"),
        "learned_positive": total("churnwatch_model_labels_total", label="churn"),
        "learned_negative": total("churnwatch_model_labels_total", label="active"),
        "dropped_treated": total("churnwatch_model_snapshots_dropped_total", reason="treated"),
        "dropped_after_label": total("churnwatch_model_snapshots_dropped_total",
                                     reason="after_label"),
        "holdout_alerts": total("churnwatch_holdout_alerts_total"),
        "alerts": publisher.sent,
        "model_version": pipeline.model.version,
        "progressive_roc_auc": quality.roc_auc,
        "progressive_log_loss": quality.log_loss,
        "replay_seconds": round(elapsed, 1),
    }
    await client.aclose()
    return publisher, counts, memory



def _memory(url: str, subscribers: Sequence[str]) -> dict[str, Any]:
    client = syncredis.Redis.from_url(url)
    keys = Keys()
    pipe = client.pipeline(transaction=False)
    for sid in subscribers:
        pipe.memory_usage(keys.state(sid), samples=0)
        pipe.get(keys.state(sid))
    out = pipe.execute()
    usage = np.array([u for u in out[0::2] if u])
    values = [v for v in out[1::2] if v]
    joined = b"".join(values)
    tail_at, off = decode_states(joined, np.array([len(v) for v in values]))[-2:]
    tails = [joined[a:b] for a, b in zip(tail_at.tolist(), off[1:].tolist())]
    ext = [len(tail) - len(split(tail)[1]) for tail in tails]  # the framed record
    client.close()
    ext_arr = np.array(ext or [0])
    return {"subscribers": int(usage.size),
            "memory_usage_median": float(np.median(usage)),
            "memory_usage_p90": float(np.percentile(usage, 90)),
            "memory_usage_max": int(usage.max()),
            "record_bytes_median": float(np.median(ext_arr)),
            "record_bytes_p90": float(np.percentile(ext_arr, 90)),
            "record_bytes_max": int(ext_arr.max())}


def run(subscribers: int, days: int, seed: int, holdout: float, batch: int,
        save: str | None = None, learning_rate: float | None = None) -> dict[str, Any]:
    sim = Simulation(SimConfig(subscribers=subscribers, days=days, seed=seed))
    events: list[Event] = []
    for raw in sim.events():
        valid, _ = decode_payload(orjson.dumps(raw))
        events += valid
    churn_ts = {ev.subscriber_id: ev.ts for ev in events if ev.type == "churn"}
    churners = set(sim.truth.churners)
    population = set(sim.truth.segments)
    policy = LabelPolicy()
    with EmbeddedRedis() as server:
        factory = ChurnModel if learning_rate is None else \
            functools.partial(ChurnModel, learning_rate=learning_rate)
        publisher, counts, memory = asyncio.run(_replay(server.url, events, holdout, batch,
                                                        policy, sorted(population), factory))
    ids = sorted(population)
    cutoff = np.array([churn_ts.get(sid, 1 << 62) for sid in ids], np.int64)
    rows = Rows.of(publisher.log, cutoff)
    churner = np.array([sid in churners for sid in ids])
    half = np.array([_half(sid) for sid in ids])
    halves = [half == 0, half == 1]
    everyone = np.ones(len(ids), bool)
    rules = rows.rule_flags()
    peaks = {(confirm, g, k, unit): rows.model_peak(g, k, confirm, unit == "days")
             for confirm in (False, True) for g in GUARDS
             for unit, runs in (("events", RUNS), ("days", DAY_RUNS)) for k in runs}
    shipped = shipped_thresholds()
    report: dict[str, Any] = {
        "subscribers": subscribers, "days": days, "seed": seed, "holdout": holdout,
        "learning_rate": learning_rate, "events": len(events), "churners": len(churners),
        "labels": counts, "memory": memory,
        "first_ready_day": {str(g): _first_ready(publisher.log, events, batch, g) for g in GUARDS},
        "rules_only": {"calibration_half": pr(rules, churner, halves[0]),
                       "evaluation_half": pr(rules, churner, halves[1]),
                       "all": pr(rules, churner, everyone)},
        "shipped": {name: at_threshold(rules, peaks[(name == "confirms_indicator", READY, 1, "events")],
                              theta, churner, everyone)
                    for name, theta in shipped.items()},
        "rules_or_model_confirms_indicator": with_model(
            rules, peaks[(True, READY, 1, "events")], churner, halves),
        "rules_or_model_alone": with_model(rules, peaks[(False, READY, 1, "events")],
                                            churner, halves),
        "variants": {_name(*key): with_model(rules, peak, churner, halves)
                     for key, peak in peaks.items()},
        "curve_all": {_name(*key): {str(t): pr(rules | (peak >= t), churner, everyone)
                                    for t in THRESHOLDS if t >= 0.8}
                      for key, peak in peaks.items() if key[1:] == (READY, 1, "events")},
    }
    if save:
        np.savez_compressed(save, rules=rules, churner=churner, half=half,
                            **{_name(*key): peak for key, peak in peaks.items()})
    return report


def _name(confirm: bool, guard: int, run: int, unit: str) -> str:
    return f"{'confirming' if confirm else 'alone'}, guard {guard}, {run} {unit}"


def shipped_thresholds() -> dict[str, float]:
    """The model score thresholds of the shipped rules (rules/default.toml): the model alone
    (``model_risk``, medium) and confirming one indicator (``model_confirmed``, high)."""
    text = resources.files("rules").joinpath("default.toml").read_text()
    indicators = {i.name: i.when for i in parse_ruleset(text, "rules/default.toml").indicators}
    out = {}
    for name, indicator in (("alone", "model_risk"), ("confirms_indicator", "model_confirmed")):
        found = re.search(r"model_score\s*>=\s*([0-9.]+)", indicators[indicator])
        if found is None:  # model_confirmed may go through model_risk
            found = re.search(r"model_score\s*>=\s*([0-9.]+)", indicators["model_risk"])
        assert found is not None, f"no model_score threshold in {indicator}"
        out[name] = float(found.group(1))
    return out


GUARDS = (100, 50, 25, 10)  # labels of each kind before the model may alert
RUNS = (1, 3)  # consecutive scored events at or above θ
DAY_RUNS = (1, 2, 3, 5, 7)  # consecutive days whose highest score is at or above θ


def _first_ready(log: ScoreLog, events: Sequence[Event], batch: int, guard: int) -> int | None:
    """The simulated day on which the model had learned ``guard`` labels of each kind."""
    for k, (positives, negatives) in enumerate(log.counts):
        if positives >= guard and negatives >= guard:
            last = events[min((k + 1) * batch, len(events)) - 1]
            return (last.ts - events[0].ts) // 86_400_000
    return None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--days", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--holdout", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", help="also write per-subscriber rule flags, churners, halves "
                                  "and model peaks of every variant to this .npz")
    p.add_argument("--learning-rate", type=float,
                   help="the model's weight learning rate (default: ChurnModel's)")
    args = p.parse_args(argv)
    report = run(args.subscribers, args.days, args.seed, args.holdout, args.batch, args.save,
                 args.learning_rate)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return report


if __name__ == "__main__":
    main()
