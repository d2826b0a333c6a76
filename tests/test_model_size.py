"""The model's inputs are bounded (issue #26, "unbounded state"): 100 profiles with 1,000
distinct attribute keys each, and their labels, grew a version from 2.5 KB to 5.4 MB
(92,030 weights). The model now learns at most ``model_max_attrs`` attributes (64; or those
of the allow-list ``model_attrs``), so a version stays under MODEL_BOUND."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.infra.runtime.metrics import Metrics
from features.schema import DAY_MS
from online_models.learner import Learner
from online_models.model import MODEL_FEATURES, SNAPSHOT_FEATURES
from online_models.snapshots import Example
from online_models.versions import ModelVersions
from tests.support.commits import append_examples
from tests.support.label_oracle import Harness

T0 = 1_778_371_200_000
K = Keys()
MODEL_BOUND = 32 * 1024  # bytes of a stored version with 64 attributes (docs/model.md)


def _flood(n: int, keys: int) -> list[Example]:
    out = []
    for i in range(n):
        churned = i % 3 == 0
        values = [(6 if churned else 1) if name == "complaints_30d" else i % 9
                  for name in SNAPSHOT_FEATURES]
        attrs = {f"k{i}_{j:04d}": float(j % 7) for j in range(keys)}
        out.append(Example(f"s{i}/1", f"s{i}", 1, 2, churned, values, attrs))
    return out


async def _learn(client, learner: Learner, examples: list[Example]) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    await append_examples(client, K, examples)
    await learner.step(publish=True)
    blob = await client.get(K.model(f"v:{await learner.versions.head()}"))
    return len(blob), orjson.loads(blob)["model"]


def test_a_flood_of_distinct_attributes_leaves_the_model_bounded(redis_url: str) -> None:
    """Examples carrying 1,000 distinct keys each reach the learner (as from a worker with
    attrs_max_keys raised to 1,024): the model learns 64 of them, all from the first
    example, and the version stays under the bound; capped at 1,024 it would not."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        learner = Learner(client, ModelVersions(client), Metrics(), "a")
        size, model = await _learn(client, learner, _flood(100, 1000))
        attrs = [name for name in model["weights"] if name.startswith("attr_")]
        assert len(attrs) == 64 and all(name.startswith("attr_k0_") for name in attrs)
        assert len(model["scaler"]["counts"]) <= len(MODEL_FEATURES) + 5 + 64
        assert size < MODEL_BOUND
        assert model["labels_seen"] == 100
        await client.flushall()
        wide = Learner(client, ModelVersions(client), Metrics(), "b", max_attrs=1024)
        size_wide, _ = await _learn(client, wide, _flood(100, 1000))
        assert size_wide > 2 * MODEL_BOUND  # 1,024 attributes: ~77 KB
        await client.aclose()

    asyncio.run(main())


def test_the_allow_list_decides_which_attributes_are_inputs(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        learner = Learner(client, ModelVersions(client), Metrics(), "a",
                          allowed_attrs=["k5_0003", "k7_0001", "absent"])
        _, model = await _learn(client, learner, _flood(10, 1000))
        assert sorted(n for n in model["scaler"]["counts"] if n.startswith("attr_")) == [
            "attr_k5_0003", "attr_k7_0001"]
        await client.aclose()

    asyncio.run(main())


def test_through_the_pipeline_100_profiles_of_1000_keys_and_labels(redis_url: str) -> None:
    """The issue's feed through the real pipeline and learner: profiles of 1,000 distinct
    keys, then a churn or active label 30 days later for each subscriber. The store keeps 64
    keys per profile and the model 64 attributes: the version stays under the bound, and
    scores a profile as it did before the round trip."""
    async def main() -> None:
        h = Harness(redis_url)
        events = [Event(f"p{i}", f"sub-{i}", "profile", T0 + i * 60_000, tenure_months=12.0,
                        attrs={f"k{i}_{j:04d}": float(j % 7) for j in range(1000)})
                  for i in range(100)]
        events += [Event(f"l{i}", f"sub-{i}", "churn" if i % 3 == 0 else "active",
                         T0 + 30 * DAY_MS + i * 60_000) for i in range(100)]
        await h.run(events)
        assert h.pipeline is not None
        metrics = h.pipeline.metrics.registry
        assert metrics.get_sample_value("churnwatch_dropped_attrs_total") == 100 * 936
        assert metrics.get_sample_value("churnwatch_model_examples_total",
                                        {"label": "churn"}) == 34
        learner = Learner(h.client, ModelVersions(h.client), Metrics(), "a")
        assert await learner.step(publish=True) == 100
        version = await learner.versions.head()
        blob = await h.client.get(K.model(f"v:{version}"))
        model = orjson.loads(blob)["model"]
        assert len([n for n in model["weights"] if n.startswith("attr_")]) == 64
        assert len(blob) < MODEL_BOUND
        loaded = (await learner.versions.load(version)).model
        assert learner.checkpoint is not None
        found = await h.pipeline.store.read([f"sub-{i}" for i in range(100)])
        rows = np.array([found[f"sub-{i}"][0] for i in range(100)])
        attrs = [found[f"sub-{i}"][1] for i in range(100)]
        np.testing.assert_array_equal(loaded.score_matrix(rows, attrs),
                                      learner.checkpoint.model.score_matrix(rows, attrs))
        await h.stop()

    asyncio.run(main())


def test_the_model_input_settings_are_validated(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from churnwatch.core.errors import ConfigError
    from churnwatch.infra.settings_load import load_settings

    defaults = load_settings()
    assert (defaults.model_max_attrs, defaults.model_attrs) == (64, None)
    monkeypatch.setenv("CHURNWATCH_MODEL_ATTRS", '["monthly_fee", "senior"]')
    assert load_settings().model_attrs == ["monthly_fee", "senior"]
    monkeypatch.delenv("CHURNWATCH_MODEL_ATTRS")
    for key, value in (("model_max_attrs", -1), ("model_max_attrs", 1025),
                       ("model_attrs", ["x" * 65]), ("model_attrs", [""])):
        with pytest.raises(ConfigError, match=key.replace("_", "-")):
            load_settings(**{key: value})
