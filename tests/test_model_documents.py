"""Model versions are plain data (issue #26, "code from data"): a version round-trips and
scores identically; a pickle or any other value planted under a version key is refused,
logged once, counted, never unpickled, and the worker keeps its model."""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from churnwatch.cli.main import app
from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.keys import Keys
from churnwatch.infra.runtime.metrics import Metrics
from features.schema import FEATURES, INDEX
from online_models.learner import Learner, ModelWatcher, example_input
from online_models.model import SNAPSHOT_FEATURES, ChurnModel, model_input
from online_models.model_state import MAX_FEATURES, ModelFormatError
from online_models.snapshots import Example
from online_models.versions import Checkpoint, ModelVersions
from tests.support.commits import append_examples

K = Keys()
REFUSED = "churnwatch_model_versions_refused_total"


class _CreatesFile:
    """Unpickling this creates ``path``: the proof that a value was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return open, (str(self.path), "w")


def _examples(n: int, start: int = 0) -> list[Example]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        churned = i % 3 == 0
        values = [int(rng.integers(0, 40)) + (6 if churned and name == "complaints_30d" else 0)
                  for name in SNAPSHOT_FEATURES]
        attrs = {"monthly_fee": float(20 + i % 50), "senior": float(i % 2)}
        out.append(Example(f"s{i}/{i}", f"s{i}", i, i + 1, churned, values, attrs))
    return out


def _rows(n: int) -> tuple[np.ndarray, list[dict[str, float]]]:
    rng = np.random.default_rng(7)
    matrix = rng.uniform(0, 60, (n, len(FEATURES)))
    matrix[:, INDEX["history_days"]] = rng.uniform(10, 400, n)  # some windows still filling
    matrix[::5, INDEX["spend_m0"]] = np.nan
    attrs = [{"monthly_fee": float(25 + k % 40), "senior": float(k % 2)} for k in range(n)]
    return matrix, attrs


def _learned(n: int = 300) -> ChurnModel:
    model = ChurnModel()
    for ex in _examples(n):
        model.learn(example_input(ex), ex.churned)
    return model


def test_a_version_round_trips_and_scores_identically() -> None:
    model = _learned()
    back = Checkpoint.decode(Checkpoint(model, "1767225600000-3").encode())
    assert back.offset == "1767225600000-3" and back.model.version == model.version
    assert back.model.label_counts() == model.label_counts() == (100, 200)
    matrix, attrs = _rows(200)
    xs = [model_input(row, a) for row, a in zip(matrix, attrs)]
    before, after = model.score(xs), back.model.score(xs)
    assert np.ptp(before) > 0.1  # a model that learned something, not 0.5 everywhere
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(back.model.score_matrix(matrix, attrs),
                                  model.score_matrix(matrix, attrs))
    assert back.model.explain(xs[0]) == model.explain(xs[0])
    for ex in _examples(50, 1000):  # learning goes on exactly as without the round trip
        model.learn(example_input(ex), ex.churned)
        back.model.learn(example_input(ex), ex.churned)
    np.testing.assert_array_equal(back.model.score(xs), model.score(xs))


def test_a_version_is_plain_json_with_the_river_version() -> None:
    from importlib import metadata

    doc = orjson.loads(Checkpoint(_learned(30), "5-0").encode())
    assert doc["format"] == "churnwatch-model/1" and doc["river"] == metadata.version("river")
    assert set(doc["model"]) == {"version", "learning_rate", "intercept_lr", "steps",
                                 "intercept", "weights", "scaler", "labels_seen", "positives",
                                 "inputs"}
    assert doc["model"]["steps"] == 30 and doc["model"]["inputs"] == "signed_log1p"


def test_a_document_without_an_input_scale_was_learned_on_raw_values() -> None:
    """Versions written before the input scale was recorded keep scoring as they learned."""
    raw = ChurnModel(inputs="identity")
    for ex in _examples(200):
        raw.learn(example_input(ex), ex.churned)
    doc = orjson.loads(Checkpoint(raw, "5-0").encode())
    del doc["model"]["inputs"]
    back = Checkpoint.decode(orjson.dumps(doc)).model
    assert back.inputs == "identity"
    matrix, attrs = _rows(100)
    xs = [model_input(row, a) for row, a in zip(matrix, attrs)]
    np.testing.assert_array_equal(back.score(xs), raw.score(xs))
    np.testing.assert_array_equal(back.score_matrix(matrix, attrs), raw.score_matrix(matrix, attrs))


def _valid() -> dict:
    return orjson.loads(Checkpoint(_learned(30), "5-0").encode())


def _mutations() -> list[tuple[str, bytes]]:
    out = []

    def case(name: str, change) -> None:  # type: ignore[no-untyped-def]
        doc = _valid()
        change(doc)
        out.append((name, orjson.dumps(doc)))

    case("format", lambda d: d.update(format="churnwatch-model/2"))
    case("unknown field", lambda d: d["model"].update(code="__import__('os')"))
    case("non-number weight", lambda d: d["model"]["weights"].update(x="1"))
    case("negative variance", lambda d: d["model"]["scaler"]["vars"].update(x=-1.0))
    case("name too long", lambda d: d["model"]["weights"].update({"a" * 81: 1.0}))
    case("too many weights", lambda d: d["model"]["weights"].update(
        {f"w{i}": 0.0 for i in range(MAX_FEATURES + 1)}))
    case("bad offset", lambda d: d.update(offset="$(reboot)"))
    case("missing model", lambda d: d.pop("model"))
    case("unknown input scale", lambda d: d["model"].update(inputs="exp"))
    overflow = orjson.dumps(_valid()).replace(b'"intercept":', b'"intercept":1e999,"x":', 1)
    out.append(("non-finite", overflow))
    out.append(("pickle", pickle.dumps(ChurnModel())))
    out.append(("not JSON", b"\x00\x01garbage"))
    return out


@pytest.mark.parametrize("name,blob", _mutations(), ids=[n for n, _ in _mutations()])
def test_anything_but_a_valid_document_is_refused(name: str, blob: bytes) -> None:
    with pytest.raises(ModelFormatError) as caught:
        Checkpoint.decode(blob)
    assert isinstance(caught.value, ChurnwatchError)
    assert "refused" in str(caught.value)


def test_a_planted_pickle_is_refused_never_unpickled_and_the_worker_keeps_its_model(
        redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "pwned"
    planted = pickle.dumps(_CreatesFile(marker))
    pickle.loads(planted)  # the payload works: unpickling it creates the file
    assert marker.exists()
    marker.unlink()

    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        metrics = Metrics()
        versions = ModelVersions(client, metrics=metrics)
        learner = Learner(client, versions, metrics, "a")
        await append_examples(client, K, _examples(60))
        await learner.step(publish=True)
        good = await versions.active()
        served: list[ChurnModel] = []
        watcher = ModelWatcher(versions, served.append)
        assert await watcher.poll() and served[-1].version == good
        # someone with SET on Redis: a pickle under a version key, made active and head
        await client.set(K.model("v:evil.1"), planted)
        await client.set(K.model("active"), "evil.1")
        await client.set(K.model("head"), "evil.1")
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="churnwatch.model"):
            for _ in range(3):
                assert not await watcher.poll()  # the pipeline keeps its current model
            assert watcher.current == good and len(served) == 1
            # a learner restarting on the planted head: refused, resumes from the newest
            # version it can read
            await client.delete(K.model("learner"))
            other = Learner(client, versions, Metrics(), "b")
            await append_examples(client, K, _examples(10, 500))
            assert await other.step(publish=True) == 10
        refusals = [r for r in caplog.records if "evil.1" in r.getMessage()]
        assert len(refusals) == 1 and "pickle" in refusals[0].getMessage()
        assert metrics.registry.get_sample_value(REFUSED) == 1
        head = await versions.head()
        assert head != "evil.1" and (await versions.load(head)).model.labels_seen == 70
        assert await watcher.poll() and served[-1].version == head  # the next valid one
        await client.aclose()

    asyncio.run(main())
    assert not marker.exists()

    runner = CliRunner()
    env = {"CHURNWATCH_REDIS_URL": redis_url}
    out = runner.invoke(app, ["model", "promote", "evil.1"], env=env)
    assert out.exit_code == 1 and "pickle" in out.output
    out = runner.invoke(app, ["model", "list", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert not marker.exists()


@pytest.mark.integration
def test_a_real_worker_refuses_planted_pickles_and_keeps_scoring(broker, redis_url: str,
                                                                 tmp_path: Path) -> None:
    """A real worker started with a pickle as its active version and head starts with an
    empty model, never unpickles it, counts it; promoted to a valid version it switches; a
    second planted version leaves it on that model."""
    from churnwatch.infra.config import (
        ALERTS_TOPIC,
        DLQ_TOPIC,
        EVENTS_TOPIC,
        SCORES_TOPIC,
    )
    from churnwatch.infra.kafka.topics import create_topics
    from tests.support.worker import Worker

    marker = tmp_path / "pwned"

    async def plant(version: str, head: bool) -> str:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        good = await versions.head()
        if good is None:
            learner = Learner(client, versions, Metrics(), "setup")
            await append_examples(client, K, _examples(60))
            await learner.step(publish=True)
            await client.delete(K.model("learner"))
            good = await versions.head()
        await client.set(K.model(f"v:{version}"), pickle.dumps(_CreatesFile(marker)))
        await client.set(K.model("active"), version)
        if head:
            await client.set(K.model("head"), version)
        await client.aclose()
        return good

    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    good = asyncio.run(plant("evil.1", head=True))
    worker = Worker(broker, redis_url, tmp_path)
    try:
        worker.start()
        worker.wait_for(lambda: worker.metric(REFUSED) == 1, timeout=60,
                        what="the planted active version refused")
        out = worker.cli("model", "promote", good)
        assert out.returncode == 0, out.stderr.decode()
        worker.wait_for(lambda: worker.metric("churnwatch_model_info", version=good) == 1,
                        timeout=30, what="the worker scoring with the promoted version")
        asyncio.run(plant("evil.2", head=False))
        worker.wait_for(lambda: worker.metric(REFUSED) == 2, timeout=30,
                        what="the second planted version refused")
        assert worker.metric("churnwatch_model_info", version=good) == 1
        assert worker.metric("churnwatch_model_info", version="evil.2") is None
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert log.count("'evil.2'") == 1 and "Traceback" not in log
    assert not marker.exists()
