"""The demo's warm-start model: a real version, rebuilt by its documented command, installed
through the strict document validation only into an empty model store, and the demo's
measure of what the model adds."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest
import redis.asyncio as aioredis

from benchmarks import demo_model as build_script
from churnwatch.core.keys import Keys
from churnwatch.demo_model import (
    _at_precision,
    install_warm_start,
    model_figures,
    model_rules,
    warm_start_document,
)
from churnwatch.dev.simulate import Truth
from churnwatch.infra.runtime.metrics import Metrics
from online_models import model_state
from online_models.learner import Learner
from online_models.versions import ModelFormatError, ModelVersions
from rules.ruleset import load_ruleset


def test_the_shipped_model_is_what_its_command_builds() -> None:
    """`python -m benchmarks.demo_model` (deterministic) rebuilds the shipped document."""
    assert build_script.build() == warm_start_document()


def test_the_shipped_model_is_a_trained_version() -> None:
    model, offset = model_state.decode(warm_start_document())
    assert offset == "0-0" and model.version == "lr-2-demo"
    positives, negatives = model.label_counts()
    assert positives >= 100 and negatives >= 100  # past the shipped rules' label guard
    assert any(abs(w) > 0.1 for w in model.classifier.weights.values())


def test_install_only_into_an_empty_store_and_the_learner_resumes(redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushdb()
        try:
            versions = ModelVersions(client)
            with pytest.raises(ModelFormatError):  # never unpickled, nothing stored
                await versions.install(pickle.dumps({"weights": {}}), 0)
            assert await versions.head() is None and await versions.active() is None
            assert await install_warm_start(client) == "lr-2-demo"
            assert await versions.head() == await versions.active() == "lr-2-demo"
            assert await install_warm_start(client) is None  # a store with a model: untouched
            learner = Learner(client, versions, Metrics(), "t", publish_every_s=0.0)
            await learner.step()
            assert learner.checkpoint is not None
            assert learner.checkpoint.model.label_counts() == \
                model_state.decode(warm_start_document())[0].label_counts()
            learner.unpublished = 1
            assert await learner.publish() == "lr-2-demo.1"
            assert await versions.install(warm_start_document(), 0) is None
            assert await client.get(Keys().model("active")) == b"lr-2-demo.1"
        finally:
            await client.flushdb()
            await client.aclose()

    asyncio.run(scenario())


def test_model_rules_of_the_shipped_ruleset() -> None:
    assert model_rules(load_ruleset()) == {"model_high_risk", "model_confirms_indicator"}


def test_added_recall_at_the_rules_precision() -> None:
    churners = frozenset({"a", "b", "c", "d"})
    # rules: 2 alerted, 1 caught (precision 0.5); model peaks: c 0.9 (hit), x 0.8 (false),
    # d 0.7 (hit), y 0.6 (false): down to 0.7, 3 of 5 caught (0.6 ≥ 0.5), at 0.6 3 of 6
    best = _at_precision({"a", "z"}, {"a"}, {"c": 0.9, "x": 0.8, "d": 0.7, "y": 0.6},
                         churners, 0.5)
    assert best == {"threshold": 0.6, "added_churners": 2, "added_false_alarms": 2,
                    "recall": 0.75}
    best = _at_precision({"a"}, {"a"}, {"c": 0.9, "x": 0.8, "d": 0.7}, churners, 1.0)
    assert best == {"threshold": 0.9, "added_churners": 1, "added_false_alarms": 0,
                    "recall": 0.5}


def test_model_figures_compare_rules_alone_with_rules_and_model() -> None:
    day = 86_400_000
    truth = Truth(churners=frozenset({"a", "b"}), churn_day={"a": 9, "b": 9},
                  warning_signs={}, segments={"a": "r", "b": "r", "c": "r"}, drivers={})
    alerts = [
        {"subscriber_id": "a", "ts": 5 * day, "rules": ["seed_high_risk"], "reasons": []},
        {"subscriber_id": "b", "ts": 6 * day, "rules": ["model_confirms_indicator"],
         "reasons": [{"kind": "model", "feature": "data_trend", "contribution": 1.0}]},
        {"subscriber_id": "c", "ts": 6 * day, "rules": ["model_high_risk"],
         "reasons": [{"kind": "model", "feature": "data_trend", "contribution": 1.0}]},
    ]
    scores = (["a", "b", "c", "c"], np.array([5, 6, 1, 6]) * day,
              np.array([0.6, 0.97, 0.1, 0.9]))
    m = model_figures(truth, 0, alerts, load_ruleset(), scores, 60 * day)
    assert m["rules_only"] == {"alerted": 1, "caught": 1, "precision": 1.0, "recall": 0.5}
    assert m["rules_and_model"] == {"alerted": 2, "caught": 2, "precision": 1.0, "recall": 1.0}
    assert m["added_recall"] == {"recall": 0.5, "precision": 0.0}
    assert m["model_rules"] == {"alerted": 2, "caught": 1, "precision": 0.5, "recall": 0.5}
    assert m["model_roc_auc"] == 0.75 and m["scored_at_0_5"] == 0  # a (0.6) < c (0.9)
    assert m["alerts_without_model_reason"] == 1
