"""The kernel's millisecond windows against the oracle (features.reference), without Redis:
events at every edge (±1 ms of 7, 30 and 35 days before now, midnights, month ends), out of
order within the lateness, duplicates, reads at later nows; and states written by versions 1
(day buckets) and 2 (bucket ages as varints) of the codec read on."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from features.batch_kernel import stage_values
from features.codec import VERSION, decode_states
from features.columns import encode_batch
from features.kernel import read_features
from features.reference import ReferenceStore
from features.schema import (
    DIVISOR,
    FEATURES,
    months_of,
)
from tests.support.feature_oracle import assert_same_rows, make_event
from tests.support.windows import LATENESS, _at_midnight, v1_value, v2_value

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EDGE_DAYS = (0, 1, 6, 7, 8, 29, 30, 31, 34, 35, 36)
MONTH_STARTS = [int(datetime(2026 + m // 12, m % 12 + 1, 1, tzinfo=timezone.utc).timestamp())
                * 1000 for m in range(24)]
KINDS = ["login"] * 4 + ["complaint"] * 2 + ["spend"] * 2 + ["usage", "active", "plan_change"]


class KernelStore:
    """The store's kernels on values kept in a dict: ``stage_values`` per batch (as
    ``FeatureStore.stage``), ``decode_states`` + ``read_features`` per read (as
    ``FeatureStore.snapshot``)."""

    def __init__(self, values: dict[str, bytes] | None = None) -> None:
        self.values = dict(values or {})

    def _joined(self, subscribers: Sequence[str]) -> tuple[bytes, np.ndarray]:
        pieces = [self.values.get(s, b"") for s in subscribers]
        off = np.zeros(len(pieces) + 1, np.int64)
        np.cumsum([len(p) for p in pieces], out=off[1:])
        return b"".join(pieces), off

    def stage(self, batch: Sequence[Event]) -> tuple[str, np.ndarray]:
        subscribers, c = encode_batch(batch)
        joined, off = self._joined(subscribers)
        codes, matrix, buf, new_off, _, _, _, _, bad = stage_values(
            np.frombuffer(joined, np.uint8), off, c.sub, c.kind, c.ts, c.day, c.month, c.a,
            c.b, c.tenure, c.ids, LATENESS)
        assert bad == -1
        raw = buf.tobytes()
        for i, sid in enumerate(subscribers):
            value = raw[new_off[i]:new_off[i + 1]]
            assert value[:1] == bytes([VERSION])
            self.values[sid] = value
        return codes.tobytes().decode(), matrix / DIVISOR

    def read(self, subscribers: Sequence[str], now: int) -> np.ndarray:
        joined, off = self._joined(subscribers)
        states, tenure, _, _, _, e_ts, e_code, e_amt, e_off, _, _ = decode_states(
            joined, np.diff(off))
        month = int(months_of(np.array([now]))[0])
        known, rows = read_features(states, tenure, now, month, e_ts, e_code, e_amt, e_off)
        assert known.all()
        return rows / DIVISOR


def check_stream(events: Sequence[Event], sizes: Sequence[int], store: KernelStore | None = None,
                 oracle: ReferenceStore | None = None) -> tuple[KernelStore, ReferenceStore]:
    """Stage ``events`` in batches of ``sizes`` (cycled), comparing each status and feature
    row with the oracle; then read every subscriber at the edges of its stored events."""
    store = store or KernelStore()
    oracle = oracle or ReferenceStore(LATENESS)
    i = k = 0
    while i < len(events):
        batch = list(events[i:i + sizes[k % len(sizes)]])
        i, k = i + len(batch), k + 1
        status, matrix = store.stage(batch)
        want = [oracle.apply(ev) for ev in batch]
        assert status == "".join(s for s, _ in want), f"batch {k}"
        rows = [row for _, row in want if row is not None]
        assert_same_rows(matrix, np.array(rows).reshape(len(rows), len(FEATURES)), f"batch {k}")
    for sid, hist in oracle.subscribers.items():
        clock = hist.clock
        nows = {0, clock + 1, clock + 40 * DAY_MS}
        for ev in hist.events[-12:]:  # later nows exactly at (and 1 ms around) their edges
            for days in (7, 30, 35):
                nows |= {ev.ts + days * DAY_MS + d for d in (-1, 0, 1)}
        for now in sorted(nows):
            assert_same_rows(store.read([sid], now), oracle.features(sid, now)[None, :],
                             f"read {sid} at {now} (clock {clock})")
    return store, oracle


@st.composite
def edge_streams(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    """Streams whose events sit on the windows' edges, relative to the moving clock or to an
    earlier event, on midnights and month starts (±1 ms), with stragglers and duplicates."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    subs = ["+447911123456", "tok:b6"][:draw(st.integers(1, 2))]
    clock = {s: T0 + draw(st.integers(0, 300)) * DAY_MS
             + draw(st.sampled_from([0, 1, DAY_MS - 1, DAY_MS // 2])) for s in subs}
    out: list[Event] = []
    for n in range(draw(st.integers(1, 60))):
        sub = draw(st.sampled_from(subs))
        how = draw(st.sampled_from(["edge", "edge", "from_event", "forward", "midnight",
                                    "month", "straggler", "duplicate"]))
        delta = draw(st.sampled_from([-1, 0, 1]))
        if how == "duplicate" and out:
            out.append(draw(st.sampled_from(out)))
            continue
        mine = [ev.ts for ev in out if ev.subscriber_id == sub]
        if how == "edge":  # ±1 ms of k days before the clock (late ones are late for both)
            ts = clock[sub] - draw(st.sampled_from(EDGE_DAYS)) * DAY_MS + delta
        elif how == "from_event" and mine:  # the clock moves to an earlier event's edge
            ts = draw(st.sampled_from(mine)) + draw(st.sampled_from(EDGE_DAYS)) * DAY_MS + delta
        elif how == "midnight":
            ts = clock[sub] - clock[sub] % DAY_MS + draw(st.integers(-8, 1)) * DAY_MS + delta
        elif how == "month":
            ts = min(m for m in MONTH_STARTS if m > clock[sub] - 20 * DAY_MS) + delta
        elif how == "straggler":
            ts = clock[sub] - draw(st.integers(0, LATENESS + DAY_MS))
        else:
            ts = clock[sub] + draw(st.sampled_from([0, 1, DAY_MS, rng.randint(0, 3 * DAY_MS)]))
        clock[sub] = max(clock[sub], ts)
        out.append(make_event(rng, n, sub, draw(st.sampled_from(KINDS)), ts))
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=5))
    return out, sizes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_streams())
def test_edge_streams_match_the_oracle(stream: tuple[list[Event], list[int]]) -> None:
    check_stream(*stream)


def test_every_edge_of_every_window_by_hand() -> None:
    """One subscriber, each counted kind at now − {7, 30, 35} days − 1 / + 0 / + 1 ms, sent
    newest first (out of order within the lateness is not possible that far back, so the
    older ones come in a batch with the event that sets the clock), then read as the clock
    moves over each edge 1 ms at a time."""
    rng = random.Random(3)
    now = T0 + 100 * DAY_MS  # midnight
    events = [make_event(rng, 0, "s", "active", now)]
    for days in (7, 30, 35):
        for d in (-1, 0, 1):
            for kind in ("login", "complaint", "spend"):
                events.append(make_event(rng, len(events), "s", kind, now - days * DAY_MS + d))
    # every one of them is late against the clock but those within 7 days: one batch,
    # clock-setting event last, so each is applied before the clock moves
    events = events[1:] + events[:1]
    events.sort(key=lambda ev: ev.ts)
    store, oracle = check_stream(events, [len(events)])
    for now_ in range(now - 2, now + 3):
        assert_same_rows(store.read(["s"], now_), oracle.features("s", now_)[None, :], str(now_))


def test_many_logins_in_one_millisecond_and_one_day() -> None:
    """Hundreds of counted events share instants and days; the scratch lists grow."""
    rng = random.Random(5)
    base = T0 + 50 * DAY_MS
    events = [make_event(rng, n, "s", rng.choice(["login", "complaint", "spend"]),
                         base + rng.choice([0, 1, 2, DAY_MS - 1]) + rng.randint(0, 2) * DAY_MS)
              for n in range(600)]
    events.sort(key=lambda ev: ev.ts)
    check_stream(events, [1, 250, 7, 400])


# ------------------------------------------------------------------ version 1 states




@st.composite
def v1_histories(draw: st.DrawFn) -> tuple[list[Event], list[Event], list[int]]:
    """An in-order history (what the old store applied), then a stream after the upgrade:
    new events at the edges, stragglers and re-sent old events."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    t = T0 + draw(st.integers(0, 300)) * DAY_MS + draw(st.integers(0, DAY_MS - 1))
    old: list[Event] = []
    for n in range(draw(st.integers(1, 50))):
        t += draw(st.sampled_from([0, 1, DAY_MS // 3, DAY_MS, rng.randint(0, 2 * DAY_MS)]))
        old.append(make_event(rng, n, "s", draw(st.sampled_from(KINDS)), t))
    clock = t
    new: list[Event] = []
    for n in range(draw(st.integers(1, 30))):
        how = draw(st.sampled_from(["edge", "forward", "resend", "straggler"]))
        if how == "resend":
            new.append(draw(st.sampled_from(old)))
            continue
        if how == "edge":
            ts = clock + draw(st.sampled_from([1, 7, 30, 35])) * DAY_MS \
                - clock % DAY_MS + draw(st.sampled_from([-1, 0, 1]))
        elif how == "straggler":
            ts = clock - draw(st.integers(0, LATENESS))
        else:
            ts = clock + draw(st.integers(0, 3 * DAY_MS))
        clock = max(clock, ts)
        new.append(make_event(rng, 1000 + n, "s", draw(st.sampled_from(KINDS)), ts))
    return old, new, draw(st.lists(st.integers(1, 10), min_size=1, max_size=4))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v1_histories())
def test_version_1_states_keep_their_day_windows_and_new_events_are_exact(
        case: tuple[list[Event], list[Event], list[int]]) -> None:
    """A version 1 value reads as if its logins, spends and complaints had happened at
    00:00:00.000 UTC of their day (exactly the old day windows for them); everything
    applied on top is exact, and the next write is version 2."""
    old, new, sizes = case
    oracle = ReferenceStore(LATENESS)
    for ev in old:
        assert oracle.apply(_at_midnight(ev), features=False)[0] == "A"
    # the clock is the latest event time, also when that event was moved back to midnight
    oracle.subscribers["s"].events.append(Event("clock", "s", "active", max(e.ts for e in old)))
    store = KernelStore({"s": v1_value(old)})
    clock = max(ev.ts for ev in old)
    assert_same_rows(store.read(["s"], clock), oracle.features("s", clock)[None, :], "as stored")
    check_stream(new, sizes, store, oracle)


# ------------------------------------------------------------------ version 2 states
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_streams())
def test_version_2_states_decode_to_the_same_state_and_are_staged_on(
        case: tuple[list[Event], list[int]]) -> None:
    """A version 2 value (bucket ages as varints) decodes to the state its version 3 value
    holds, and the rest of the stream staged on it matches the oracle."""
    events, sizes = case
    half = len(events) // 2
    store, oracle = check_stream(events[:half], sizes)
    old = KernelStore({sid: v2_value(value) for sid, value in store.values.items()})
    for sid, value in store.values.items():
        ours = decode_states(value, np.array([len(value)]))
        theirs = decode_states(old.values[sid], np.array([len(old.values[sid])]))
        for a, b in zip(ours[:9], theirs[:9]):  # states, tenure, seen ids, counted events
            np.testing.assert_array_equal(np.sort(a, axis=None), np.sort(b, axis=None))
        np.testing.assert_array_equal(ours[0], theirs[0])
    check_stream(events[half:], sizes, old, oracle)
