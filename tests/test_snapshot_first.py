"""A BSS feed — one profile per subscriber, its label a month or two later, nothing else — is
learned with the shipped label policy, through the real pipeline on a real redis-server:
the profile's snapshot is taken although the store has just met the subscriber (its profile
gives a tenure), the label joins it, and the model's scores move off 0.5."""

from __future__ import annotations

import asyncio
import random

import msgspec
import numpy as np

from alerting.alert import ScoreRecord
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from churnwatch.infra.runtime.metrics import Metrics
from features.reference import ReferenceStore
from online_models.learner import Learner, ModelWatcher, example_input
from online_models.model import ChurnModel, model_input
from online_models.snapshots import LabelPolicy
from online_models.versions import ModelVersions
from tests.support.label_oracle import Collector, Harness, stream_examples

T0 = 1_778_371_200_000 + 9 * 3_600_000  # 09:00 UTC
SHIPPED = LabelPolicy()  # model_history_days 35, horizon 60 days, one snapshot per 14 days


def _profile(sid: str, ts: int, n: int = 1, tenure: float | None = 14.0,
             **attrs: float) -> Event:
    return Event(event_id=f"{sid}-p{n}", subscriber_id=sid, type="profile", ts=ts,
                 plan="standard", tenure_months=tenure, attrs=attrs)


def _label(sid: str, ts: int, churned: bool) -> Event:
    return Event(event_id=f"{sid}-label", subscriber_id=sid,
                 type="churn" if churned else "active", ts=ts)


class _Scores(Collector):
    wants_scores = True

    def __init__(self) -> None:
        super().__init__()
        self.records: list[ScoreRecord] = []

    async def scores(self, payloads: list[bytes]) -> None:
        self.records += [msgspec.json.decode(p, type=ScoreRecord) for p in payloads]


def test_a_profile_first_subscriber_is_learned_from_its_first_snapshot(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url, SHIPPED)
        await h.run([_profile("bss-churner", T0, monthly_charges=80.0),
                     _profile("bss-stayer", T0 + 1000, monthly_charges=20.0),
                     _profile("no-tenure", T0 + 2000, tenure=None, monthly_charges=50.0)])
        await h.run([_label("bss-churner", T0 + 40 * DAY_MS, True),
                     _label("bss-stayer", T0 + 45 * DAY_MS, False),
                     _label("no-tenure", T0 + 50 * DAY_MS, True)])
        got = {ex.subscriber_id: ex for ex in await stream_examples(h.client)}
        # the subscriber without a tenure was new to the operator too: its warm-up stands
        assert set(got) == {"bss-churner", "bss-stayer"}
        churner, stayer = got["bss-churner"], got["bss-stayer"]
        assert (churner.snapshot_ts, churner.churned) == (T0, True)
        assert (stayer.snapshot_ts, stayer.churned) == (T0 + 1000, False)
        assert churner.attrs == {"monthly_charges": 80.0}
        x = example_input(churner)
        assert x["tenure_months"] == 14.0 and x["attr_monthly_charges"] == 80.0
        # nothing watched yet: the empty windows are missing, not zero
        assert x["history_seen"] == 0.0
        assert not {"logins_7d", "logins_prev28", "spend_count_30d", "recency_days"} & set(x)
        await h.stop()

    asyncio.run(main())


def test_a_label_31_to_60_days_later_joins_the_right_snapshot(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url, SHIPPED)
        events = [_profile("at-31", T0), _label("at-31", T0 + 31 * DAY_MS, True),
                  _profile("at-60", T0), _label("at-60", T0 + 60 * DAY_MS, True),
                  _profile("renewed", T0), _label("renewed", T0 + 58 * DAY_MS, False),
                  # two snapshots (a new period), then a port-out 75 days after the first:
                  # the first survived its horizon, the second is the positive
                  _profile("two", T0, 1, tenure=5.0, plan_fee=30.0),
                  _profile("two", T0 + 20 * DAY_MS, 2, tenure=5.0, plan_fee=15.0),
                  _label("two", T0 + 75 * DAY_MS, True)]
        events.sort(key=lambda ev: ev.ts)
        for k in range(0, len(events), 3):
            await h.run(events[k:k + 3])
        got = {ex.id: (ex.churned, ex.label_ts, ex.attrs) for ex in await stream_examples(h.client)}
        assert got == {
            f"at-31/{T0}": (True, T0 + 31 * DAY_MS, {}),
            f"at-60/{T0}": (True, T0 + 60 * DAY_MS, {}),
            f"renewed/{T0}": (False, T0 + 58 * DAY_MS, {}),
            # survival is final at the clock of the label event (67 days < 75), before it
            f"two/{T0}": (False, T0 + 75 * DAY_MS, {"plan_fee": 30.0}),
            f"two/{T0 + 20 * DAY_MS}": (True, T0 + 75 * DAY_MS, {"plan_fee": 15.0}),
        }
        await h.stop()

    asyncio.run(main())


def test_scores_vary_once_the_learner_has_published(redis_url: str) -> None:
    """Profiles over 60 days, labels 31-60 days later; the learner steps and publishes after
    every batch and the pipeline switches to each version, as the worker's timers do."""
    rng = random.Random(3)
    events: list[Event] = []
    for k in range(400):
        sid = f"bss-{k:04d}"
        monthly = float(rng.random() < 0.5)
        tenure = float(rng.randrange(1, 60))
        churned = rng.random() < (0.7 if monthly and tenure < 12 else 0.1)
        ts = T0 + rng.randrange(60 * DAY_MS)
        events.append(_profile(sid, ts, tenure=tenure, month_to_month=monthly))
        events.append(_label(sid, ts + rng.randrange(31 * DAY_MS, 60 * DAY_MS), churned))
    events.sort(key=lambda ev: ev.ts)

    async def main() -> None:
        h = Harness(redis_url, SHIPPED, model=ChurnModel(), publisher=_Scores())
        pipeline = await h.start()
        versions = ModelVersions(h.client)
        learner = Learner(h.client, versions, Metrics(), "test", publish_every_s=0.0)
        watcher = ModelWatcher(versions, pipeline.switch_model)
        for k in range(0, len(events), 100):
            await h.run(events[k:k + 100])
            await learner.step(publish=True)
            await watcher.poll()
        positives, negatives = pipeline.model.label_counts()
        assert positives >= 30 and negatives >= 150  # every label joined its profile
        assert positives + negatives == 400
        # new subscribers, scored by the latest version
        fresh = [_profile(f"new-{k}", T0 + 200 * DAY_MS + k, tenure=float(t),
                          month_to_month=float(m))
                 for k, (t, m) in enumerate([(3, 1), (6, 1), (40, 0), (50, 0)] * 5)]
        await h.run(fresh)
        by_sid = {r.subscriber_id: r.score for r in h.publisher.records}
        scores = np.array([by_sid[ev.subscriber_id] for ev in fresh])
        assert not np.any(scores == 0.5)
        risky = scores[[ev.attrs["month_to_month"] == 1.0 for ev in fresh]]
        safe = scores[[ev.attrs["month_to_month"] == 0.0 for ev in fresh]]
        assert risky.min() > safe.max() + 0.1
        # the worker's vectorised scorer gives what River's pipeline gives on the same inputs
        reference = ReferenceStore()
        rows = [reference.apply(ev)[1] for ev in fresh]
        river = pipeline.model.score([model_input(row, ev.attrs) for row, ev in zip(rows, fresh)])
        assert np.allclose(scores, river, rtol=0, atol=1e-9)
        early = [r.score for r in h.publisher.records if r.event_id.endswith("-p1")
                 and r.ts < T0 + 31 * DAY_MS]
        assert early and set(early) == {0.5}  # before any label: nothing learned yet
        await h.stop()

    asyncio.run(main())
