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
from churnwatch.cli import app
from churnwatch.keys import Keys
from churnwatch.metrics import Metrics
from online_models.learner import Learner, ModelWatcher, append_examples
from online_models.model import SNAPSHOT_FEATURES, ChurnModel
from online_models.snapshots import Example
from online_models.versions import Checkpoint, ModelVersions, VersionError

K = Keys()


def _examples(n: int, start: int) -> list[Example]:
    out = []
    for i in range(start, start + n):
        churned = i % 3 == 0
        values = [(5 if churned else 1) + i % 2 if name == "complaints_30d" else 0
                  for name in SNAPSHOT_FEATURES]
        out.append(Example(f"s{i}/{i}", f"s{i}", i, i + 1, churned, values, {}))
    return out


async def _append(client, examples: list[Example]) -> None:  # type: ignore[no-untyped-def]
    pipe = client.pipeline(transaction=False)
    append_examples(pipe, K, examples)
    await pipe.execute()


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
            await _append(client, _examples(40, 40 * k))
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
        await _append(client, _examples(10, 500))
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


def test_forget_older_keeps_the_window_and_copies_rarely() -> None:
    from online_models.learner import forget_older

    recent: dict[str, int] = {}
    copies = 0
    for ms in range(0, 100_000, 10):  # one id every 10 ms of stream time, window 1 s
        recent[f"id{ms}"] = ms
        pruned = forget_older(recent, ms - 1000, 100)
        copies += pruned is not recent
        recent = pruned
        assert min(recent.values()) >= ms - 1100  # bounded: window + slack
        assert all(f"id{t}" in recent for t in range(max(0, ms - 1000), ms + 1, 10))
    assert len(recent) <= 111
    assert copies <= 100_000 // 100  # once per slack of stream time, not once per page
    assert forget_older({}, 5, 1) == {}


def test_checkpoint_round_trip_and_model_only_decoding() -> None:
    import pickle

    model = ChurnModel()
    recent = {f"s{i}/{i}": 1_700_000_000_000 + i for i in range(1000)}
    blob = Checkpoint(model, "17-3", recent).encode()
    back = Checkpoint.decode(blob)
    assert (back.offset, back.recent, list(back.recent)) == ("17-3", recent, list(recent))
    assert back.model.version == model.version
    assert Checkpoint.decode_model(blob).version == model.version
    for legacy in (pickle.dumps(Checkpoint(model, "5-0", {"a/1": 5})), pickle.dumps(model)):
        assert Checkpoint.decode_model(legacy).version == model.version
    assert Checkpoint.decode(pickle.dumps(Checkpoint(model, "5-0", {"a/1": 5}))).recent == {
        "a/1": 5}
    # the recent ids are one string inside the blob: decoding the model creates no object per id
    assert isinstance(pickle.loads(blob)[3], bytes)


def test_the_learners_dedup_window_stays_bounded(redis_url: str) -> None:
    """An hour of examples at one entry per second: the learner remembers the ids of its
    window (plus at most a tenth of it) and still drops a repeat inside it."""
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        learner = Learner(client, ModelVersions(client), Metrics(), "a", page=50,
                          dedup_window_ms=60_000)
        key, sizes = K.model("examples"), []
        for n in range(3600):
            blob = msgspec.msgpack.encode(_examples(5, 5 * n))
            await client.xadd(key, {"x": blob}, id=f"{1_000_000 + n * 1000}-0")
            if n % 100 == 99:
                await learner.step(publish=False)
                sizes.append(len(learner.checkpoint.recent))
        assert max(sizes) <= 5 * 66 + 5 * 100  # window + slack + one step's entries
        repeat = msgspec.msgpack.encode(_examples(1, 5 * 3590))  # learned 10 s earlier
        await client.xadd(key, {"x": repeat}, id=f"{1_000_000 + 3600 * 1000}-0")
        assert await learner.step(publish=False) == 0
        await client.aclose()

    asyncio.run(main())
