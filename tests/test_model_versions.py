"""Model versions: publishing never overwrites, `churnwatch model list|promote|rollback` switch
the active version, workers pick it up, publishing is fenced; and the random holdout."""

from __future__ import annotations

import asyncio

import msgspec
import orjson
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from alerting.holdout import Holdout
from churnwatch.cli.main import app
from churnwatch.core.keys import Keys
from churnwatch.infra.runtime.metrics import Metrics
from online_models.learner import Learner, ModelWatcher, example_writes
from online_models.model import ChurnModel
from online_models.snapshots import Example
from online_models.versions import Checkpoint, ModelVersions, VersionError
from tests.support.examples import examples
from tests.support.redis_target import RedisTarget

K = Keys()


async def _append(client, examples: list[Example]) -> None:  # type: ignore[no-untyped-def]
    for write in example_writes(K, examples):
        await client.execute_command(*write.args)


def _cli(redis_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["model", *args], env={"CHURNWATCH_REDIS_URL": redis_url})
    return result.exit_code, result.output


def test_versions_promote_rollback_and_workers_follow(redis_url: str) -> None:
    async def main() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        learner = Learner(client, versions, Metrics(), "a")
        published = []
        for k in range(3):
            await _append(client, examples(40, 40 * k))
            await learner.step(publish=True)
            published.append(await versions.head())
        assert len(set(published)) == 3 and await versions.active() == published[-1]
        blobs = [await client.get(K.model(f"v:{v}")) for v in published]
        assert len({len(b) for b in blobs}) >= 1 and len(set(blobs)) == 3  # three states kept
        with pytest.raises(VersionError):
            await versions.load("lr-2.999")
        served = []
        watcher = ModelWatcher(versions, lambda m: served.append(m.version))
        assert await watcher.poll() and served == [published[-1]]
        assert not await watcher.poll()  # unchanged: nothing reloaded
        await client.aclose()
        return published

    published = asyncio.run(main())
    code, out = _cli(redis_url, "list", "--json")
    assert code == 0, out
    listing = orjson.loads(out)
    assert [r["version"] for r in listing["versions"]] == published
    assert [r["active"] for r in listing["versions"]] == [False, False, True]
    assert listing["versions"][-1]["positives"] + listing["versions"][-1]["negatives"] == 120
    assert listing["pinned"] is False

    code, out = _cli(redis_url, "promote", published[0])
    assert code == 0, out

    async def after_promote() -> tuple[str | None, list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        served: list[str] = []
        watcher = ModelWatcher(versions, lambda m: served.append(m.version), published[-1])
        await watcher.poll()
        # the learner keeps learning and publishing, but a pinned version stays active
        learner = Learner(client, versions, Metrics(), "b")
        await _append(client, examples(10, 500))
        await learner.step(publish=True)
        active = await versions.active()
        await client.aclose()
        return active, served

    active, served = asyncio.run(after_promote())
    assert active == published[0] and served == [published[0]]
    code, out = _cli(redis_url, "rollback")
    assert code == 0 and published[-1] in out
    code, out = _cli(redis_url, "promote", "latest")
    assert code == 0, out
    code, out = _cli(redis_url, "list", "--json")
    listing = orjson.loads(out)
    assert listing["pinned"] is False
    assert listing["versions"][-1]["active"] and listing["versions"][-1]["head"]
    code, out = _cli(redis_url, "promote", "nope")
    assert code == 1 and "unknown model version" in out


def test_publish_is_fenced_and_never_overwrites(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        cp = Checkpoint(ChurnModel())
        await client.set(K.model("learner"), "a")
        assert await versions.publish("a", None, "x.1", cp, {"created_ms": 1}, True) == 1
        assert await versions.publish("b", "x.1", "x.2", cp, {"created_ms": 2}, True) == 0
        assert await versions.publish("a", None, "x.2", cp, {"created_ms": 2}, True) == -1
        await client.set(K.model("head"), "x.0")
        assert await versions.publish("a", "x.0", "x.1", cp, {"created_ms": 3}, True) == -2
        assert await versions.active() == "x.1"
        await client.aclose()

    asyncio.run(main())


def test_holdout_is_deterministic_and_of_the_configured_size() -> None:
    ids = [f"+4477{n:08d}" for n in range(20_000)]
    five = Holdout(0.05)
    held = [s for s in ids if five.holds(s)]
    assert 0.045 < len(held) / len(ids) < 0.055
    assert held == [s for s in ids if Holdout(0.05).holds(s)]  # stable across instances
    assert set(held) <= {s for s in ids if Holdout(0.10).holds(s)}  # growing keeps members
    assert not any(Holdout(0.0).holds(s) for s in ids[:1000])
    assert all(Holdout(1.0).holds(s) for s in ids[:1000])
    other = {s for s in ids if Holdout(0.05, salt="another").holds(s)}
    assert len(other & set(held)) < len(held) / 4  # a new salt draws a new group
    with pytest.raises(ValueError):
        Holdout(1.5)


async def _learn_seconds(client, learner: Learner, seconds: range,  # type: ignore[no-untyped-def]
                         per_entry: int = 5) -> None:
    """One stream entry a second of stream time, ``per_entry`` new examples each."""
    key = K.model("examples")
    for n in seconds:
        blob = msgspec.msgpack.encode(examples(per_entry, per_entry * n))
        await client.xadd(key, {"x": blob}, id=f"{1_000_000 + n * 1000}-0")
        if n % 100 == 99:
            await learner.step(publish=True)


def test_the_learners_dedup_window_is_fixed_and_versions_carry_no_ids(redis_url: str) -> None:
    """An hour of examples at one entry per second through a one-minute window: the window's
    memory never changes, a repeat inside it is dropped, and the versions (which no longer
    carry the ids) do not grow with the examples learned; the window is stored once."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        learner = Learner(client, ModelVersions(client), Metrics(), "a", page=50,
                          dedup_window_ms=60_000, dedup_capacity=4096)
        await _learn_seconds(client, learner, range(600))
        assert learner.dedup is not None
        nbytes, early = learner.dedup.nbytes, learner.dedup.early_rotations
        first = len(await client.get(K.model(f"v:{await learner.versions.head()}")))
        await _learn_seconds(client, learner, range(600, 3600))
        assert learner.dedup.nbytes == nbytes and learner.dedup.early_rotations == early == 0
        assert len(learner.dedup) <= 5 * 120  # at most two windows of ids
        last = len(await client.get(K.model(f"v:{await learner.versions.head()}")))
        assert abs(last - first) < 200  # the model's size, not the ids learned
        assert len(await client.get(K.model("dedup"))) < 40 + 8 * 5 * 120  # 8 B an id
        repeat = msgspec.msgpack.encode(examples(1, 5 * 3590))  # learned 10 s earlier
        await client.xadd(K.model("examples"), {"x": repeat}, id=f"{1_000_000 + 3600_000}-0")
        assert await learner.step(publish=False) == 0
        await client.aclose()

    asyncio.run(main())


def test_a_repeat_after_a_learner_restart_is_still_dropped(redis_target: RedisTarget) -> None:
    """A new learner resuming from the head loads the window published with it: an example
    appended again after the restart (a replayed batch) is not learned twice. On a single
    Redis and on Redis Cluster (the publish script's keys share one slot)."""

    async def main() -> None:
        client = redis_target.client()
        versions = ModelVersions(client)
        first = Learner(client, versions, Metrics(), "a", lock_ms=60_000)
        await _append(client, examples(30, 0))
        assert await first.step(publish=True) == 30
        await client.delete(K.model("learner"))  # the first learner's worker died
        metrics = Metrics()
        second = Learner(client, versions, metrics, "b")
        await _append(client, examples(10, 25))  # 5 replayed, 5 new
        assert await second.step(publish=True) == 5
        assert metrics.registry.get_sample_value(
            "churnwatch_model_examples_repeated_total") == 5
        await client.aclose()

    asyncio.run(main())


def test_a_step_cancelled_mid_page_learns_the_page_again_from_the_head(redis_url: str) -> None:
    """The window admits a page before the page is learned: a step cancelled in between
    (a worker shutting down) drops the learner's state, and the next step resumes from the
    head, so the page's examples are learned, not taken for repeats."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        learner = Learner(client, ModelVersions(client), Metrics(), "a", slice_s=0.0)
        await _append(client, examples(10, 0))
        assert await learner.step(publish=True) == 10
        await _append(client, examples(30, 10))
        observe = learner.quality.observe
        observed: list[int] = []

        def observe_then_stop(*args):
            observed.append(1)
            if len(observed) == 5:  # inside the page: the learner yields after this example
                task.cancel()
            return observe(*args)

        learner.quality.observe = observe_then_stop
        task = asyncio.ensure_future(learner.step(publish=False))
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(observed) == 5
        assert learner.checkpoint is None and learner.dedup is None
        learner.quality.observe = observe
        assert await learner.step(publish=True) == 30
        await client.aclose()

    asyncio.run(main())


def test_a_stopping_learner_publishes_and_hands_the_lock_over_at_once(redis_url: str) -> None:
    """A worker that stops publishes what it learned since its last version and releases
    the learner lock: the next worker leads at its next step, resuming from that version
    (nothing is learned twice), instead of waiting out the lock's expiry."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        first = Learner(client, versions, Metrics(), "a", lock_ms=60_000,
                        publish_every_s=3600)
        await _append(client, examples(20, 0))
        assert await first.step(publish=True) == 20
        published = await versions.head()
        await _append(client, examples(15, 20))
        assert await first.step() == 15 and await versions.head() == published  # not due
        await first.hand_over()
        head = await versions.head()
        assert head != published
        assert sum((await versions.load(head)).model.label_counts()) == 35
        assert await client.get(K.model("learner")) is None
        assert await first.step() == 0 and not first.leading  # it does not take it back
        assert await client.get(K.model("learner")) is None
        second = Learner(client, versions, Metrics(), "b")
        await _append(client, examples(5, 35))
        assert await second.step() == 5 and second.leading
        await client.aclose()

    asyncio.run(main())


def test_a_hand_over_releases_only_its_own_lock(redis_url: str) -> None:
    """A learner that lost the lock (it expired while the worker was stalled, another took
    it) leaves the new holder's lock alone when it stops."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        versions = ModelVersions(client)
        first = Learner(client, versions, Metrics(), "a")
        await _append(client, examples(10, 0))
        await first.step(publish=True)
        await client.set(K.model("learner"), "b")  # a expired, b took over
        await first.hand_over()
        assert await client.get(K.model("learner")) == b"b"
        await client.aclose()

    asyncio.run(main())
