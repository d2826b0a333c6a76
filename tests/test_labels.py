"""Delayed labels on stored snapshots, through the real pipeline and Redis, against a plain
recomputation from the raw event list (tests/support/label_oracle.py): horizon edges, replays,
restarts, a crash between the examples' append and the batch commit, and treated vs held-out
subscribers."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
import redis as syncredis

import streams.pipeline as pipeline_module
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.runtime.metrics import Metrics
from online_models.learner import Learner, example_input
from online_models.model import SNAPSHOT_FEATURES, ChurnModel
from online_models.snapshots import Book, LabelPolicy
from online_models.versions import ModelVersions
from tests.support.label_oracle import Harness, reference_labels, stream_examples
from tests.support.label_streams import T0, _random_stream

SHORT = LabelPolicy(horizon_ms=20 * DAY_MS, every_ms=5 * DAY_MS, lateness_ms=3 * DAY_MS,
                    exclusion_ms=10 * DAY_MS, history_ms=0)
WARMUP = dataclasses.replace(SHORT, history_ms=12 * DAY_MS)


def _ev(sid: str, n: int, kind: str, ts: int, **kw) -> Event:  # type: ignore[no-untyped-def]
    return Event(event_id=f"{sid}-{n}", subscriber_id=sid, type=kind, ts=ts, **kw)


def _as_labels(examples) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    return {ex.id: (ex.snapshot_ts, ex.churned, ex.values, ex.attrs) for ex in examples}




def _batches(events: list[Event], rng: random.Random) -> list[list[Event]]:
    out, i = [], 0
    while i < len(events):
        size = rng.randint(1, 60)
        out.append(events[i:i + size])
        i += size
    return out


def test_horizon_edges(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        events = []
        for sid, churn_day in (("+447700900001", 60), ("+447700900002", 59),
                               ("+447700900003", 61)):
            events += [_ev(sid, 1, "login", T0), _ev(sid, 2, "churn", T0 + churn_day * DAY_MS)]
        quiet = "+447700900004"  # survival: final once clock − 7 d lateness > ts + 60 d
        events += [_ev(quiet, 1, "login", T0), _ev(quiet, 2, "login", T0 + 67 * DAY_MS)]
        await h.run(events)
        got = _as_labels(await stream_examples(h.client))
        assert {k: v[:2] for k, v in got.items()} == {
            f"+447700900001/{T0}": (T0, True),   # exactly 60 days before the churn
            f"+447700900002/{T0}": (T0, True),   # 59 days
            f"+447700900003/{T0}": (T0, False),  # 61 days: it survived its horizon
        }
        await h.run([_ev(quiet, 3, "login", T0 + 67 * DAY_MS + 1)])
        got = _as_labels(await stream_examples(h.client))
        assert got[f"{quiet}/{T0}"][:2] == (T0, False)
        assert f"{quiet}/{T0 + 67 * DAY_MS}" not in got
        assert got == reference_labels(events + [_ev(quiet, 3, "login", T0 + 67 * DAY_MS + 1)],
                                       h.policy, h.publisher.marks())
        await h.stop()

    asyncio.run(main())


@pytest.mark.parametrize("seed, policy", [(1, SHORT), (2, SHORT), (3, SHORT), (4, WARMUP)])
def test_random_streams_with_replays_and_restarts_match_the_reference(
        redis_url: str, seed: int, policy: LabelPolicy) -> None:
    events = _random_stream(seed)

    async def main() -> None:
        h = Harness(redis_url, policy)
        plan = _batches(events, random.Random(seed))
        for k, batch in enumerate(plan):
            if k == len(plan) // 2:
                await h.start()  # a worker restart: nothing in memory survives
            await h.run(batch)
        for batch in plan[: len(plan) // 3]:  # a replay of the first third changes nothing
            await h.run(batch)
        examples = await stream_examples(h.client)
        ids = [ex.id for ex in examples]
        assert len(ids) == len(set(ids)), "a snapshot was resolved twice"
        want = reference_labels(events, policy, h.publisher.marks())
        assert _as_labels(examples) == want
        first = {}
        for ev in events:
            first[ev.subscriber_id] = min(ev.ts, first.get(ev.subscriber_id, ev.ts))
        tenure = SNAPSHOT_FEATURES.index("tenure_months")
        early = [ex for ex in examples
                 if (ex.snapshot_ts // DAY_MS - first[ex.subscriber_id] // DAY_MS) * DAY_MS
                 < policy.history_ms]
        # before the store has watched them for history_ms, only subscribers whose profile
        # gave a tenure have snapshots
        assert all(ex.values[tenure] is not None for ex in early)
        if policy.history_ms:
            assert early, "no subscriber with a known tenure was learned early"
        assert sum(1 for v in want.values() if v[1]) >= 3
        assert sum(1 for v in want.values() if not v[1]) >= 10
        await h.stop()

    asyncio.run(main())


def test_crash_between_append_and_commit_is_learned_once(redis_url: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    events = _random_stream(7)
    real_writes = pipeline_module.example_writes
    sync = syncredis.Redis.from_url(redis_url)
    crashes = []

    def append_then_die(keys, examples):  # type: ignore[no-untyped-def]
        if examples and not crashes:  # the append lands, then the worker dies
            for write in real_writes(keys, examples):
                sync.execute_command(*write.args)
            crashes.append(len(examples))
            raise RuntimeError("killed between the append and the commit")
        return real_writes(keys, examples)

    async def main() -> None:
        h = Harness(redis_url, SHORT)
        plan = _batches(events, random.Random(7))
        monkeypatch.setattr(pipeline_module, "example_writes", append_then_die)
        done = 0
        for batch in plan:
            try:
                await h.run(batch)
            except RuntimeError:
                break
            done += len(batch)
        assert crashes, "no batch resolved any example"
        await h.start()  # restart; Kafka re-delivers from the last commit, batched otherwise
        for batch in _batches(events[done:], random.Random(8)):
            await h.run(batch)
        examples = await stream_examples(h.client)
        ids = [ex.id for ex in examples]
        repeats = len(ids) - len(set(ids))
        assert repeats >= 1
        first = {}
        for ex in examples:
            first.setdefault(ex.id, ex)
        want = reference_labels(events, SHORT, h.publisher.marks())
        assert _as_labels(first.values()) == want
        metrics = Metrics()
        learner = Learner(h.client, ModelVersions(h.client), metrics, "test-learner")
        assert await learner.step(publish=True) == len(want)
        assert metrics.registry.get_sample_value(
            "churnwatch_model_examples_repeated_total") == repeats
        await h.stop()

    asyncio.run(main())
    sync.close()


def test_treated_snapshots_are_excluded_and_held_out_ones_learned(redis_url: str) -> None:
    """Two subscribers with the same story: complaints and a login drop (seed_high_risk),
    then churn. The one who got a retention action contributes no examples; the held-out one
    (same alert, no action) does, positive."""
    from alerting.holdout import Holdout

    holdout = Holdout(0.5)
    ids = [f"+4477009{n:05d}" for n in range(100)]
    held = next(s for s in ids if holdout.holds(s))
    treated = next(s for s in ids if not holdout.holds(s))

    def story(sid: str) -> list[Event]:
        out = [_ev(sid, d, "login", T0 + d * DAY_MS) for d in range(25)]
        out += [_ev(sid, 100 + k, "complaint", T0 + (30 + k) * DAY_MS, category="network")
                for k in range(2)]
        out.append(_ev(sid, 200, "churn", T0 + 40 * DAY_MS))
        return out

    async def main() -> None:
        h = Harness(redis_url, holdout=0.5)
        events = sorted(story(held) + story(treated), key=lambda e: e.ts)
        await h.run(events)
        alerts = {a.subscriber_id: a for a in h.publisher.sent}
        assert alerts[treated].actions and not alerts[treated].holdout
        assert alerts[held].holdout and not alerts[held].actions
        assert {s["reason"] for s in alerts[held].suppressed} == {"holdout"}
        got = await stream_examples(h.client)
        assert got and {ex.subscriber_id for ex in got} == {held}
        assert all(ex.churned for ex in got)
        assert _as_labels(got) == reference_labels(events, h.policy, h.publisher.marks())
        registry = h.pipeline.metrics.registry  # type: ignore[union-attr]
        assert registry.get_sample_value("churnwatch_holdout_alerts_total") == 1
        assert registry.get_sample_value("churnwatch_model_snapshots_dropped_total",
                                         {"reason": "treated"}) >= 1
        for group in ("treated", "holdout"):
            assert registry.get_sample_value("churnwatch_retention_experiment_total",
                                             {"group": group, "result": "churned"}) == 1
        await h.stop()

    asyncio.run(main())








def test_profile_update_after_a_snapshot_does_not_leak_into_its_label(redis_url: str) -> None:
    """Through the pipeline and Redis: a snapshot, then a renewal's profile (12 months left),
    then churn within the horizon: the positive example has the 1 month left it was scored
    with. Batched both ways (profile and churn in the snapshot's batch, and each alone)."""
    sid = "+447700900021"
    events = [_ev(sid, 1, "profile", T0, plan="standard", monthly_fee=25.0, tenure_months=3.0,
                  attrs={"contract_months_left": 1.0, "age": 30.0}),
              _ev(sid, 2, "login", T0 + DAY_MS),
              _ev(sid, 3, "profile", T0 + 10 * DAY_MS, plan="standard", monthly_fee=25.0,
                  tenure_months=3.0, attrs={"contract_months_left": 12.0}),
              _ev(sid, 4, "login", T0 + 11 * DAY_MS),
              _ev(sid, 5, "churn", T0 + 12 * DAY_MS)]

    async def main() -> None:
        for plan in ([events], [[e] for e in events]):
            h = Harness(redis_url, SHORT)
            await h.start()
            await h.client.flushdb()  # the second plan starts from an empty store again
            for batch in plan:
                await h.run(batch)
            got = await stream_examples(h.client)
            assert [(ex.snapshot_ts, ex.churned, ex.attrs) for ex in got] == [
                (T0, True, {"contract_months_left": 1.0, "age": 30.0}),
                (T0 + 10 * DAY_MS, True, {"contract_months_left": 12.0})]
            assert _as_labels(got) == reference_labels(events, SHORT, h.publisher.marks())
            await h.stop()

    asyncio.run(main())


def test_learner_restart_resumes_exactly(redis_url: str) -> None:
    """A learner that dies after publishing, having learned more, is replaced by one that
    resumes from the published checkpoint: same scores at the restore, and in the end the same
    weights as one learner that saw every example once."""
    events = _random_stream(11, subscribers=10, days=150)
    half = len(events) // 2

    async def main() -> None:
        h = Harness(redis_url, SHORT)
        await h.run(events[:half])
        everything = await stream_examples(h.client)
        versions = ModelVersions(h.client)
        first = Learner(h.client, versions, Metrics(), "learner-a", lock_ms=60_000)
        learned_a = await first.step(publish=True)
        assert learned_a > 0
        probe = [example_input(ex) for ex in everything[:50]]
        published = list(first.checkpoint.model.score(probe))  # type: ignore[union-attr]
        await h.run(events[half:])
        everything += await stream_examples(h.client)
        await first.step(publish=False)  # learned more, never published: lost with the worker
        await h.client.delete(Keys().model("learner"))  # its lock expired
        second = Learner(h.client, versions, Metrics(), "learner-b")
        await second._hold_lock()
        await second._restore()
        assert list(second.checkpoint.model.score(probe)) == published  # type: ignore[union-attr]
        await second.step(publish=True)
        reference = ChurnModel()
        seen = set()
        for ex in everything:
            if ex.id not in seen:
                seen.add(ex.id)
                reference.learn(example_input(ex), ex.churned)
        model = second.checkpoint.model  # type: ignore[union-attr]
        assert model.classifier.weights == reference.classifier.weights
        assert model.classifier.intercept == reference.classifier.intercept
        assert model.label_counts() == reference.label_counts()
        assert first.checkpoint is not None and await first.step() == 0  # fenced off
        assert not first.leading
        await h.stop()

    asyncio.run(main())




def test_silence_sweep_resolves_survivors_and_snapshots_the_quiet(redis_url: str) -> None:
    """A subscriber who goes quiet never sends the event that would move its clock: the sweep,
    at the partition's watermark, labels its old snapshot negative and takes a new one,
    touching only the record (compare-and-set on the value's tail)."""
    quiet, busy = "+447700900011", "+447700900012"

    async def main() -> None:
        h = Harness(redis_url, holdout=1.0)  # the sweep's going_quiet alert acts on nobody
        events = [_ev(quiet, 1, "login", T0)]
        events += [_ev(busy, d, "login", T0 + d * DAY_MS) for d in range(0, 71, 5)]
        await h.run(events)
        earlier = _as_labels(await stream_examples(h.client))
        assert all(k.startswith(busy) for k in earlier)  # its own old periods, not the quiet
        store = h.pipeline.store  # type: ignore[union-attr]
        before = await store.read([quiet], T0 + 70 * DAY_MS)
        result = await h.pipeline.sweep(0, h.publisher)  # type: ignore[union-attr]
        assert result.outcomes["swept"] == 1
        got = _as_labels(await stream_examples(h.client))
        assert {k: v[:2] for k, v in got.items() if k not in earlier} == {
            f"{quiet}/{T0}": (T0, False)}
        after = await store.read([quiet], T0 + 70 * DAY_MS)
        assert after[quiet][1] == before[quiet][1]
        import numpy as np

        assert np.array_equal(after[quiet][0], before[quiet][0], equal_nan=True)  # untouched
        snap = await store.snapshot([quiet])
        book = Book.decode(snap.staged.parts(quiet)[1])
        assert [s.ts for s in book.snaps] == [T0 + 70 * DAY_MS]  # taken at the watermark
        assert [a.rules for a in h.publisher.sent] == [["going_quiet"]]
        # a value whose tail changed since the read is left alone
        key = Keys().state(quiet)
        value = await h.client.get(key)
        assert await h.pipeline.writes.tails(keys=[key], args=[b"not-the-tail", b"x"]) == 0
        assert await h.client.get(key) == value
        await h.stop()

    asyncio.run(main())


def test_model_leaves_out_time_leaking_inputs_that_snapshots_still_store() -> None:
    import numpy as np

    from features.schema import FEATURES
    from online_models.model import (
        HISTORY,
        HISTORY_SEEN,
        MODEL_FEATURES,
        SNAPSHOT_FEATURES,
        TIME_LEAKING,
        TRENDS,
        model_input,
    )
    from online_models.snapshots import model_features

    assert TIME_LEAKING and TIME_LEAKING <= set(SNAPSHOT_FEATURES)
    stored = model_features(list(range(len(SNAPSHOT_FEATURES))))
    assert set(stored) == set(MODEL_FEATURES) and not set(stored) & TIME_LEAKING
    assert all(stored[name] == SNAPSHOT_FEATURES.index(name) for name in stored)
    row = np.arange(len(FEATURES), dtype=float)
    row[FEATURES.index("history_days")] = 40.0  # watched long enough: no window still filling
    live = model_input(row, {"age": 30.0})
    trends = {name for name, *_ in TRENDS}  # derived only from model features
    assert {source for _, *sources, _ in TRENDS for source in sources} <= set(MODEL_FEATURES)
    assert set(live) == (set(MODEL_FEATURES) - {HISTORY}) | {"attr_age", HISTORY_SEEN} | trends


def test_learner_gives_the_event_loop_turns_while_learning_a_backlog(redis_url: str) -> None:
    """A long backlog is learned in slices: the worker's batches, on the same event loop, get
    a turn between them. The slices change nothing in what is learned."""
    events = _random_stream(5, subscribers=10, days=150)

    async def main() -> None:
        h = Harness(redis_url, SHORT)
        await h.run(events)
        everything = await stream_examples(h.client)
        turns = 0
        stop = asyncio.Event()

        async def other_task() -> None:  # stands for the agent's batches
            nonlocal turns
            while not stop.is_set():
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(other_task())
        await asyncio.sleep(0)
        learner = Learner(h.client, ModelVersions(h.client), Metrics(), "slices", slice_s=0.0)
        started = turns
        learned = await learner.step(publish=False)
        between = turns - started
        stop.set()
        await ticker
        assert learned == len({ex.id for ex in everything}) > 20
        assert between >= learned  # one turn after every example (slice 0) at least
        reference = ChurnModel()
        for ex in {ex.id: ex for ex in everything}.values():
            reference.learn(example_input(ex), ex.churned)
        model = learner.checkpoint.model  # type: ignore[union-attr]
        assert model.classifier.weights == reference.classifier.weights
        await h.stop()

    asyncio.run(main())
