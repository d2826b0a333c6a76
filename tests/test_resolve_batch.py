"""``resolve_batch`` finds the subscribers to skip with numpy; this checks it against a plain
walk over every applied event (the reference below), batch by batch, through the real
pipeline: the same examples in the same order, the same outcomes and drops, the same stored
records."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Mapping, Sequence

import msgspec
import pytest

import streams.pipeline as pipeline_module
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from features.store import BatchFeatures
from features.values import StateValues
from online_models.labels import LABEL_TYPES, _step
from online_models.snapshots import (
    Book,
    LabelPolicy,
    Resolved,
    learnable,
    quantise,
    stored_values,
)
from tests.support.label_oracle import Harness
from tests.support.label_streams import _random_stream

pytestmark = pytest.mark.integration


def reference(policy: LabelPolicy, events: Sequence[Event], staged: BatchFeatures,
              marks: Mapping[tuple[str, str], bool], skipped: list[str]) -> Resolved:
    """Every applied event, one by one: group by subscriber, find each one's last time and
    labels, read each record's due time; then step through the subscribers that may change."""
    out = Resolved()
    rows = staged.rows.tolist()
    if not rows:
        return out
    ready = learnable(staged.matrix, policy).tolist()
    by_sub: dict[str, list[int]] = {}
    latest: dict[str, int] = {}
    eventful = {sid for sid, _ in marks} | set(staged.previous_attrs)
    for j, i in enumerate(rows):
        ev = events[i]
        by_sub.setdefault(ev.subscriber_id, []).append(j)
        latest[ev.subscriber_id] = max(latest.get(ev.subscriber_id, 0), ev.ts)
        if ev.type in LABEL_TYPES:
            eventful.add(ev.subscriber_id)
    values = staged.staged
    records = {sid: values.parts(sid)[1] for sid in by_sub}
    quantised = quantise(staged.matrix)
    for sid, js in by_sub.items():
        old = records[sid]
        if old and sid not in eventful and \
                max(latest[sid], staged.clocks.get(sid, 0)) < due_of(old):
            skipped.append(sid)
            continue
        after = staged.attrs[js[-1]]
        book = Book.decode(old, staged.previous_attrs.get(sid, after))
        book.clock = max(book.clock, staged.clocks.get(sid, 0))
        book.rows = lambda j: stored_values(quantised[j].tolist())
        for j in js:
            _step(book, policy, events[rows[j]], j, ready[j], staged.attrs[j], marks, out)
        body = book.encode(policy, after)
        if body != old:
            values.replace_extension(sid, body)
    return out


def due_of(record: bytes) -> int:
    """A stored record's due time: its first four bytes, in seconds (0 when empty)."""
    return int.from_bytes(record[:4], "little") * 1000 if record else 0


def _copy(values: StateValues) -> StateValues:
    twin = StateValues(values.subscribers, values._raw, values._offsets, values._blob_len)
    twin._replaced = dict(values._replaced)
    return twin


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_batches_resolve_as_a_walk_over_every_event(redis_url: str, seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fast = pipeline_module.resolve_batch
    compared = {"batches": 0, "examples": 0}
    skipped: list[str] = []

    def both(policy, events, staged, marks):  # type: ignore[no-untyped-def]
        twin = dataclasses.replace(staged, staged=_copy(staged.staged))
        want = reference(policy, events, twin, marks, skipped)
        got = fast(policy, events, staged, marks)
        assert got == want
        assert staged.staged.in_order() == twin.staged.in_order()
        compared["batches"] += 1
        compared["examples"] += len(got.examples)
        return got

    monkeypatch.setattr(pipeline_module, "resolve_batch", both)
    rng = random.Random(seed)
    # a fifth of the events at midnight: on the due times of new periods (T0 is a Thursday,
    # like the epoch, so the weekly periods start at its midnights)
    events = [msgspec.structs.replace(ev, ts=ev.ts // DAY_MS * DAY_MS)
              if rng.random() < 0.2 else ev
              for ev in _random_stream(seed, subscribers=30, days=150)]
    policy = LabelPolicy(history_ms=0, every_ms=7 * DAY_MS)

    async def main() -> None:
        h = Harness(redis_url, policy, holdout=0.3)
        i = 0
        while i < len(events):
            size = rng.choice([1, 5, 20, 80, 300])
            await h.run(events[i:i + size])
            i += size
        for k in range(0, 200, 50):  # a replay changes nothing, in both
            await h.run(events[k:k + 50])
        await h.stop()

    asyncio.run(main())
    assert compared["batches"] > 20 and compared["examples"] > 50 and len(skipped) > 30
