"""What churnwatch knows about one subscriber: features, indicators, segment, score, alerts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from alerting.ledger import AlertLedger
from churnwatch.core.events import normalise_subscriber
from churnwatch.core.severity import SEVERITIES
from churnwatch.core.units import DAY_MS
from churnwatch.infra.config import Settings
from features.schema import FEATURES
from features.store import FeatureStore, StoreConfig
from online_models.model import ChurnModel, model_input
from online_models.versions import ModelVersions
from rules import registry
from rules.engine import CompiledRuleset, compile_ruleset
from rules.ruleset import load_ruleset, parse_ruleset


async def inspect_subscriber(settings: Settings, redis: Any, subscriber: str,
                             now_ms: int | None = None) -> dict[str, Any]:
    """A JSON-ready report (docs/contract.md §5); ``known`` is false for a subscriber never seen.
    Uses the ruleset and model the workers publish in Redis."""
    sid = normalise_subscriber(subscriber)
    store = FeatureStore(redis, StoreConfig(lateness_ms=int(settings.lateness_days * DAY_MS)))
    found = await store.read([sid], now_ms=now_ms)
    alerts = [orjson.loads(a) for a in await AlertLedger(redis).recent_alerts(sid)]
    if sid not in found:
        return describe(sid, None, alerts, None, None)
    published = await registry.fetch(redis)  # the ruleset the workers run, if one was pushed
    compiled = compile_ruleset(parse_ruleset(published.text, published.source) if published
                               else load_ruleset(settings.rules_file))
    checkpoint = await ModelVersions(redis).load_active()
    return describe(sid, found[sid], alerts, compiled, checkpoint.model if checkpoint else None)


def describe(sid: str, found: tuple[np.ndarray, dict[str, float]] | None,
             alerts: list[dict[str, Any]], compiled: CompiledRuleset | None,
             model: ChurnModel | None) -> dict[str, Any]:
    """The report of subscriber ``sid`` from its features and attributes (``found``, None if
    never seen), its recent alerts, a compiled ruleset and the model (if any)."""
    if found is None or compiled is None:
        return {"subscriber_id": sid, "known": False, "features": {}, "indicators": {},
                "segment": None, "score": None, "severity": None, "rules": [], "alerts": alerts}
    row, attrs = found
    score = float(model.score([model_input(row, attrs)])[0]) if model else None
    inputs = np.array([[score, *model.label_counts()]]) if model else None
    evaluation = compiled.evaluate(row.reshape(1, -1), inputs)
    ruleset = compiled.ruleset
    rank = int(evaluation.severity[0])
    return {
        "subscriber_id": sid,
        "known": True,
        "features": {n: (None if math.isnan(v) else float(v)) for n, v in zip(FEATURES, row)},
        "attrs": attrs,
        "indicators": {ind.name: bool(evaluation.indicators[0, k])
                       for k, ind in enumerate(ruleset.indicators)},
        "segment": ruleset.segment_names[evaluation.segment[0]],
        "score": score,
        "model_version": model.version if model else None,
        "severity": SEVERITIES[rank - 1] if rank else None,
        "rules": [r.id for k, r in enumerate(ruleset.rules) if evaluation.hits[0, k]],
        "ruleset_version": ruleset.version,
        "alerts": alerts,
    }
