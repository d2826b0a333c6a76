"""The label cap (issue #26, "feeds are principals"): a flood of ``churn``/``active`` labels
for the same subscribers moves the model as one label each does. At most
``model_max_labels_per_horizon`` labels of one subscriber within a horizon are learned; the
snapshots the others label are dropped (``churnwatch_model_snapshots_dropped_total{reason=
"label_cap"}``). The labels learned ride in the subscriber's state value, so the cap holds
across batches and worker restarts."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from churnwatch.core.errors import ConfigError
from churnwatch.core.events import Event
from churnwatch.infra.runtime.metrics import Metrics
from churnwatch.infra.settings_load import load_settings
from features.schema import DAY_MS
from online_models.learner import Learner
from online_models.model import SNAPSHOT_FEATURES
from online_models.snapshots import Book, LabelPolicy, Resolved
from online_models.versions import ModelVersions
from tests.support.label_oracle import Harness, reference_labels, stream_examples

T0 = 1_778_371_200_000 + 9 * 3_600_000
SUBS = [f"+4477009{n:05d}" for n in range(20)]
DROPPED = "churnwatch_model_snapshots_dropped_total"


def _ev(sid: str, eid: str, kind: str, day: float, **kw) -> Event:  # type: ignore[no-untyped-def]
    return Event(f"{sid}-{eid}", sid, kind, T0 + int(day * DAY_MS), **kw)


def _history() -> list[Event]:
    """Each subscriber's profile (a tenure: learnable at once), a snapshot at day 0."""
    return [_ev(s, "p", "profile", 0, tenure_months=12.0, attrs={"fee": 20.0}) for s in SUBS]


def _flood(start: int = 1) -> list[list[Event]]:
    """A hostile feed: for every subscriber, 25 churn and 25 active labels within 40 days,
    with logins in new snapshot periods between them (new snapshots to label), in 5
    batches."""
    batches = []
    for b in range(5):
        batch = []
        for k in range(10):
            n = b * 10 + k
            day = start + n * 0.8
            for s in SUBS:
                if n % 5 == 0:
                    batch.append(_ev(s, f"login{n}", "login", day - 0.1))
                batch.append(_ev(s, f"l{n}", "churn" if n % 2 else "active", day))
        batches.append(batch)
    return batches


def test_a_flood_of_labels_is_learned_as_one_label_each(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        await h.run(_history())
        capped = 0.0
        for k, batch in enumerate(_flood()):
            if k == 2:  # a worker restart half-way: the cap is in the stored state
                assert h.pipeline is not None
                capped += h.pipeline.metrics.registry.get_sample_value(
                    DROPPED, {"reason": "label_cap"}) or 0
                await h.start()
            await h.run(batch)
        assert h.pipeline is not None
        examples = await stream_examples(h.client)
        # each subscriber's first label (active, day 1) labels its day-0 snapshot; nothing else
        assert sorted((e.subscriber_id, e.snapshot_ts, e.churned) for e in examples) == sorted(
            (s, T0, False) for s in SUBS)
        capped += h.pipeline.metrics.registry.get_sample_value(DROPPED, {"reason": "label_cap"})
        # each login after the first label is a new snapshot (the last one was resolved), and
        # the next label, capped, drops it
        logins = sum(1 for b in _flood() for ev in b if ev.type == "login") - len(SUBS)
        assert capped == logins == 9 * len(SUBS)
        events = _history() + [ev for batch in _flood() for ev in batch]
        assert {e.id for e in examples} == set(reference_labels(events, h.policy, {}))
        learner = Learner(h.client, ModelVersions(h.client), Metrics(), "a")
        assert await learner.step(publish=True) == len(SUBS)
        assert learner.checkpoint is not None
        assert learner.checkpoint.model.label_counts() == (0, len(SUBS))
        # a label a full horizon after the first one is learned again
        await h.run([_ev(s, "login-later", "login", 55) for s in SUBS]
                    + [_ev(s, "later", "churn", 1 + 60 + 1) for s in SUBS])
        assert await learner.step(publish=True) == len(SUBS)
        assert learner.checkpoint.model.label_counts() == (len(SUBS), len(SUBS))
        await h.stop()

    asyncio.run(main())


def test_the_cap_is_configurable(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url, policy=dataclasses.replace(Harness.policy, max_labels=2))
        await h.run(_history())
        for batch in _flood():
            await h.run(batch)
        examples = await stream_examples(h.client)
        # day 0's snapshot (active, day 1), then the next login's (churn, day 5): positive
        assert sorted((e.snapshot_ts > T0, e.churned) for e in examples) == sorted(
            [(False, False)] * len(SUBS) + [(True, True)] * len(SUBS))
        await h.stop()

    asyncio.run(main())
    assert load_settings().model_max_labels_per_horizon == 1
    for bad in (0, 1001):
        with pytest.raises(ConfigError, match="model-max-labels-per-horizon"):
            load_settings(model_max_labels_per_horizon=bad)


def test_the_labels_learned_are_stored_until_no_accepted_label_can_be_near() -> None:
    policy = LabelPolicy(horizon_ms=10 * DAY_MS, lateness_ms=2 * DAY_MS)
    book = Book()
    out = Resolved()
    book.advance(T0, policy, "s", {}, out)
    book.label(False, T0, policy, "s", {}, out)  # nothing to label: not counted
    assert book.labels == [] and book.encode(policy, {}) == b""
    book.take([0] * len(SNAPSHOT_FEATURES), {}, policy, out)
    book.label(False, T0, policy, "s", {}, out)
    assert len(out.examples) == 1 and book.labels == [T0]
    body = book.encode(policy, {})
    assert body and Book.decode(body).labels == [T0]  # nothing pending but the label
    # at T0+12d-1 a label at T0+10d-1 is still accepted (2 days late), within the horizon
    book.advance(T0 + 12 * DAY_MS - 1, policy, "s", {}, out)
    assert Book.decode(book.encode(policy, {})).labels == [T0]
    book.advance(T0 + 12 * DAY_MS, policy, "s", {}, out)
    assert book.encode(policy, {}) == b""  # any label accepted now is a horizon away
