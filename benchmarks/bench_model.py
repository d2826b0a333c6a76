"""Does the online model add recall to the rules at the same precision? (demo generator)

Replays the simulated operator (``churnwatch.simulate``, the demo's feed) through the real
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
half — nothing is tuned on the figures reported.

By default nobody gets a retention action (``--holdout 1``): the simulator's churners leave
whatever is done, so treating them would only hide their labels from the model
(`online_models.snapshots` excludes treated subscribers' snapshots). ``--holdout 0.05`` shows
how few positive labels the production default leaves when rules act on most churners.

    python -m benchmarks.bench_model [--subscribers 1000] [--days 150] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from importlib import resources
from collections.abc import Sequence
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
from churnwatch.embedded import EmbeddedRedis
from churnwatch.events import Event, decode_payload
from churnwatch.keys import Keys
from churnwatch.metrics import Metrics
from churnwatch.simulate import SimConfig, Simulation
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
    wants_scores = True

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, float, bool, bool]] = []
        self.ready = False
        self.sent = 0

    async def dead_letters(self, payloads: list[bytes]) -> None:
        pass

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        self.sent += len(alerts)

    async def scores(self, payloads: list[bytes]) -> None:
        for raw in payloads:
            s = _scores.decode(raw)
            self.rows.append((s.subscriber_id, s.ts, s.score if self.ready else -1.0,
                              RULE_HIGH in s.rules, ONE_INDICATOR in s.rules))


def _rules():  # type: ignore[no-untyped-def]
    """The shipped rules with the one-indicator watch rule acting (its hits then appear in the
    score records; with --holdout 1 nobody is acted on anyway)."""
    text = resources.files("rules").joinpath("default.toml").read_text()
    head, sep, tail = text.partition(f"[rules.{ONE_INDICATOR}]")
    return compile_ruleset(parse_ruleset(head + sep + tail.replace("shadow = true", "", 1),
                                         "rules/default.toml (watch rule acting)"))


def _half(sid: str) -> int:
    return hashlib.blake2b(sid.encode(), digest_size=1).digest()[0] & 1


def _flags(rows: Sequence[tuple], cutoff: dict[str, int], threshold: float | None,
           confirm: bool = False) -> set[str]:
    """Subscribers alerted before their churn event (everyone else: at any time): by the
    rule, or by a model score ≥ threshold (with ``confirm``: on a row where one operator
    indicator holds, as the shipped ``model_confirms_indicator``)."""
    out: set[str] = set()
    for sid, ts, score, rule, one in rows:
        if ts >= cutoff.get(sid, 1 << 62):
            continue
        if rule or (threshold is not None and score >= threshold and (one or not confirm)):
            out.add(sid)
    return out


def _pr(flagged: set[str], churners: set[str], population: set[str]) -> dict[str, Any]:
    flagged = flagged & population
    churners = churners & population
    hits = len(flagged & churners)
    return {"alerted": len(flagged), "caught": hits, "churners": len(churners),
            "precision": round(hits / len(flagged), 4) if flagged else None,
            "recall": round(hits / len(churners), 4) if churners else None}


async def _replay(url: str, events: list[Event], holdout: float, batch: int,
                  policy: LabelPolicy, population: Sequence[str],
                  ) -> tuple[_Publisher, dict[str, Any], dict[str, Any]]:
    client = aioredis.Redis.from_url(url)
    metrics = Metrics()
    pipeline = Pipeline(FeatureStore(client), AlertLedger(client),
                        _rules(), ChurnModel(), load_playbook(), metrics,
                        labels=policy, holdout=Holdout(holdout))
    versions = ModelVersions(client)
    learner = Learner(client, versions, metrics, "bench", publish_every_s=0.0)
    watcher = ModelWatcher(versions, pipeline.switch_model)
    publisher = _Publisher()
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
        positives, negatives = pipeline.model.label_counts()
        publisher.ready = positives >= READY and negatives >= READY
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
    tails = decode_states(b"".join(values), np.array([len(v) for v in values]))[-1]
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


def run(subscribers: int, days: int, seed: int, holdout: float, batch: int) -> dict[str, Any]:
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
        publisher, counts, memory = asyncio.run(_replay(server.url, events, holdout, batch,
                                                        policy, sorted(population)))
    rows = publisher.rows
    halves = [{s for s in population if _half(s) == h} for h in (0, 1)]
    rules = _flags(rows, churn_ts, None)
    report: dict[str, Any] = {
        "subscribers": subscribers, "days": days, "seed": seed, "holdout": holdout,
        "events": len(events), "churners": len(churners), "labels": counts, "memory": memory,
        "rules_only": {"calibration_half": _pr(rules, churners, halves[0]),
                       "evaluation_half": _pr(rules, churners, halves[1]),
                       "all": _pr(rules, churners, population)},
    }
    thresholds = np.round(np.arange(0.05, 1.0, 0.01), 2).tolist()
    for name, confirm in (("rules_or_model_confirms_indicator", True),
                          ("rules_or_model_alone", False)):
        flagged = {t: _flags(rows, churn_ts, t, confirm) for t in thresholds}
        base = report["rules_only"]["calibration_half"]["precision"] or 0.0
        chosen = next((t for t in thresholds
                       if (_pr(flagged[t], churners, halves[0])["precision"] or 0.0) >= base),
                      None)
        report[name] = {
            "threshold": chosen,
            **({"calibration_half": _pr(flagged[chosen], churners, halves[0]),
                "evaluation_half": _pr(flagged[chosen], churners, halves[1]),
                "all": _pr(flagged[chosen], churners, population)} if chosen is not None
               else {}),
            "curve_all": {str(t): _pr(flagged[t], churners, population)
                          for t in thresholds if round(t * 100) % 5 == 0 or t >= 0.95},
        }
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--days", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--holdout", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = run(args.subscribers, args.days, args.seed, args.holdout, args.batch)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return report


if __name__ == "__main__":
    main()
