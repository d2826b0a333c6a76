"""What churnwatch knows about one subscriber: features, indicators, segment, score, alerts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from alerting.ledger import AlertLedger
from churnwatch.core.events import normalise_subscriber
from churnwatch.core.severity import SEVERITIES
from churnwatch.infra.config import Settings
from churnwatch.infra.sections import Sections
from features.schema import FEATURES
from features.store import FeatureStore, StoreConfig
from online_models.model import ChurnModel, model_input
from online_models.versions import ModelVersions
from rules import registry
from rules.engine import CompiledRuleset, compile_ruleset
from rules.ruleset import Ruleset, load_ruleset, parse_ruleset

UNKNOWN_SEGMENT = "unknown"


async def inspect_subscriber(settings: Settings, redis: Any, subscriber: str,
                             now_ms: int | None = None) -> dict[str, Any]:
    """A JSON-ready report (docs/contract.md §5, every key always present; ``known`` is false
    for a subscriber never seen). Uses the ruleset and model the workers publish in Redis."""
    sid = normalise_subscriber(subscriber)
    store = FeatureStore(redis, StoreConfig(lateness_ms=Sections.of(settings).store.lateness_ms))
    found = await store.read([sid], now_ms=now_ms)
    alerts = [orjson.loads(a) for a in await AlertLedger(redis).recent_alerts(sid)]
    published = await registry.fetch(redis)  # the ruleset the workers run, if one was pushed
    ruleset = (parse_ruleset(published.text, published.source) if published
               else load_ruleset(settings.rules_file))
    checkpoint = await ModelVersions(redis).load_active()
    model = checkpoint.model if checkpoint else ChurnModel()  # what the workers score with
    if sid not in found:
        return unknown(sid, alerts, ruleset, model)
    return describe(sid, found[sid], alerts, compile_ruleset(ruleset), model)


def unknown(sid: str, alerts: list[dict[str, Any]], ruleset: Ruleset,
            model: ChurnModel) -> dict[str, Any]:
    """The report of a subscriber never seen: every feature 0 and missing, every indicator
    false, segment ``unknown``, score 0, no severity and no rules."""
    return {
        "subscriber_id": sid,
        "known": False,
        "features": dict.fromkeys(FEATURES, 0.0),
        "missing_features": list(FEATURES),
        "attrs": {},
        "indicators": {ind.name: False for ind in ruleset.indicators},
        "segment": UNKNOWN_SEGMENT,
        "score": 0.0,
        "model_version": model.version,
        "severity": None,
        "rules": [],
        "ruleset_version": ruleset.version,
        "alerts": alerts,
    }


def describe(sid: str, found: tuple[np.ndarray, dict[str, float]] | None,
             alerts: list[dict[str, Any]], compiled: CompiledRuleset,
             model: ChurnModel) -> dict[str, Any]:
    """The report of subscriber ``sid`` from its features and attributes (``found``, None if
    never seen: :func:`unknown`), its recent alerts, a compiled ruleset and the model. A
    feature that cannot be computed yet (a window still filling, no spend to compare) is 0
    and named in ``missing_features``."""
    if found is None:
        return unknown(sid, alerts, compiled.ruleset, model)
    row, attrs = found
    score = float(model.score([model_input(row, attrs)])[0])
    inputs = np.array([[score, *model.label_counts()]])
    evaluation = compiled.evaluate(row.reshape(1, -1), inputs)
    ruleset = compiled.ruleset
    rank = int(evaluation.severity[0])
    return {
        "subscriber_id": sid,
        "known": True,
        "features": {n: (0.0 if math.isnan(v) else float(v)) for n, v in zip(FEATURES, row)},
        "missing_features": [n for n, v in zip(FEATURES, row) if math.isnan(v)],
        "attrs": attrs,
        "indicators": {ind.name: bool(evaluation.indicators[0, k])
                       for k, ind in enumerate(ruleset.indicators)},
        "segment": ruleset.segment_names[evaluation.segment[0]],
        "score": score,
        "model_version": model.version,
        "severity": SEVERITIES[rank - 1] if rank else None,
        "rules": [r.id for k, r in enumerate(ruleset.rules) if evaluation.hits[0, k]],
        "ruleset_version": ruleset.version,
        "alerts": alerts,
    }
