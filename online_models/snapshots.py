"""Scored feature snapshots per subscriber, and the delayed labels that resolve them. Pure.

Every scored row (an applied event other than ``churn``/``active``, or a silence-sweep check)
may become a *snapshot*: the model features, quantised, at the subscriber's clock. At most one
snapshot is kept per period (``every_ms``, default 14 days): the period's first scored row.
Pending snapshots are resolved into labelled :class:`Example` s:

- ``churn`` at T: snapshots taken in [T − horizon, T] are positive, older ones negative (they
  survived their horizon), newer ones (taken after T, e.g. by a sweep at the partition
  watermark) are dropped;
- ``active`` at T: snapshots taken at or before T are negative;
- survival: once the clock c satisfies ``c − lateness > ts + horizon`` the snapshot is
  negative. The lateness margin makes this final: any churn event still accepted has
  T ≥ c − lateness, outside the snapshot's horizon.

New to the engine is not new to the operator. A scored row may become a snapshot when the
operator's profile gave the subscriber's tenure (``tenure_months``), however recently the
store first saw it: a feed of one profile per subscriber, its label a month or two later, is
learned from that first snapshot. The windows still filling are read as missing by the model,
next to how long the store has watched (``history_days``, see ``online_models.model``). A
subscriber without a known tenure gets no snapshot until the store has watched it for
``history_ms`` (35 days: the longest day window, ``logins_prev28``, reaches 34 days back,
counted in UTC days from its earliest event): nothing then says it is not brand new.

Retention actions confound labels (an offer may keep a subscriber who would have left), so a
subscriber who receives one has every pending snapshot dropped and no snapshot is taken for
``exclusion_ms`` afterwards. Subscribers in the random holdout get no action, so their
snapshots stay: they are the at-risk examples the model keeps learning from. The first alert
also starts an experiment unit (treated or holdout) that ends as *churned* (churn within the
horizon) or *retained* (the horizon passed), so the action's effect can be measured.

Resolved snapshots are removed, so each is learned once; the record lives in the subscriber's
state value (``features.extension``) and is committed atomically with the batch.

Each snapshot keeps the profile attributes it was taken with, so a snapshot taken before a
profile update (a renewal, a new plan) is learned with the attributes the scorer saw, not
the later ones. They are stored as differences from the attributes of the same state value
(usually none: profiles change rarely), once per run of snapshots sharing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import msgspec
import numpy as np

from churnwatch.core.units import DAY_MS
from features.schema import INDEX
from online_models.model import MODEL_FEATURES, SNAPSHOT_FEATURES

TREATED, HOLDOUT = 1, 2
GROUPS = {TREATED: "treated", HOLDOUT: "holdout"}

# Stored codes fit in one msgpack byte (-32..127): feature values in [-16, 63] are kept exactly
# (after rounding), larger magnitudes on a log scale: 6 steps per doubling above 63 (about
# ±6 %, up to ~93,000), 4 steps per doubling below -16 (down to -256). Money is in currency
# units, usage in MB / minutes. The model standardises its inputs, so the learner sees what
# the scorer sees to within a few percent on large values.
COLUMNS = np.array([INDEX[name] for name in SNAPSHOT_FEATURES], dtype=np.int64)
_HI, _LO, _UP, _DOWN = 64, -16, 6.0, 4.0
_NAN = -128  # not a code: read back as missing


@dataclass(frozen=True)
class LabelPolicy:
    """Label horizon, snapshot period, allowed lateness, post-action exclusion and the
    history a subscriber without a known tenure needs before its first snapshot (ms), and
    how many ``churn``/``active`` labels of one subscriber are learned within a horizon."""

    horizon_ms: int = 60 * DAY_MS
    every_ms: int = 14 * DAY_MS
    lateness_ms: int = 7 * DAY_MS
    exclusion_ms: int = 60 * DAY_MS
    history_ms: int = 35 * DAY_MS
    max_labels: int = 1


class Example(msgspec.Struct, frozen=True, array_like=True):
    """A labelled snapshot: what the learner learns. ``id`` (subscriber and snapshot time)
    is the same whenever the same snapshot is resolved again, e.g. after a crash between the
    example's append and the batch commit, so the learner can drop the repeat."""

    id: str
    subscriber_id: str
    snapshot_ts: int
    label_ts: int
    churned: bool
    values: list[int | None]
    attrs: dict[str, float]


_TENURE, _HISTORY = INDEX["tenure_months"], INDEX["history_days"]


def learnable(matrix: np.ndarray, policy: LabelPolicy) -> np.ndarray:
    """Which feature rows may become snapshots: the profile gave a tenure, or the store has
    watched the subscriber for ``policy.history_ms`` (whole UTC days)."""
    with np.errstate(invalid="ignore"):
        return ~np.isnan(matrix[:, _TENURE]) | (matrix[:, _HISTORY] * DAY_MS
                                                 >= policy.history_ms)


def quantise(matrix: np.ndarray) -> np.ndarray:
    """Feature rows → one-byte codes (NaN → a sentinel read back as missing)."""
    x = matrix[:, COLUMNS]
    missing = np.isnan(x)
    x = np.nan_to_num(x, nan=0.0, posinf=1e12, neginf=-1e12)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = _HI + np.rint(_UP * np.log2(np.maximum(x, 1.0) / _HI))
        down = _LO - np.rint(_DOWN * np.log2(np.maximum(-x, 1.0) / -_LO))
    q = np.where(x >= _HI - 0.5, np.minimum(up, 127),
                 np.where(x <= _LO - 0.5, np.maximum(down, -32), np.rint(x)))
    q = q.astype(np.int64)
    q[missing] = _NAN
    return q


def stored_values(q_row: list[int]) -> list[int | None]:
    """One quantised row as stored (missing values as None)."""
    return [None if v == _NAN else v for v in q_row]


def decoded(code: int) -> float:
    """A stored code's value."""
    if code > _HI:
        return _HI * 2.0 ** ((code - _HI) / _UP)
    if code < _LO:
        return _LO * 2.0 ** ((_LO - code) / _DOWN)
    return float(code)


def model_features(values: list[int | None]) -> dict[str, float]:
    """Stored values (``SNAPSHOT_FEATURES``) → the model's input dict (missing values left out)."""
    return {name: decoded(v) for name, v in zip(SNAPSHOT_FEATURES, values)
            if v is not None and name in _INPUTS}


_INPUTS = frozenset(MODEL_FEATURES)


@dataclass
class Snapshot:
    ts: int
    values: list[int | None] | int  # stored values, or a batch row index not yet materialised
    # the profile attributes when it was taken; None: unknown (a record stored before they
    # were kept), the attributes at resolution are used
    attrs: Mapping[str, float] | None = None


@dataclass
class Resolved:
    """What resolving produced: examples, experiment outcomes and dropped snapshot counts."""

    examples: list[Example] = field(default_factory=list)
    outcomes: list[tuple[str, bool]] = field(default_factory=list)  # (group, churned)
    dropped: dict[str, int] = field(default_factory=dict)  # reason → snapshots

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


@dataclass
class Book:
    """One subscriber's snapshot record."""

    clock: int = 0
    no_snapshot_until: int = 0
    alerted_at: int = 0
    group: int = 0
    snaps: list[Snapshot] = field(default_factory=list)
    rows: Callable[[int], list[int | None]] | None = None  # materialises batch row indices
    labels: list[int] = field(default_factory=list)  # times of the labels learned lately

    # ---- transitions (policy and output passed in) -------------------------------------
    def advance(self, clock: int, policy: LabelPolicy, sid: str, attrs: dict[str, float],
                out: Resolved) -> None:
        """Move the clock forward and resolve what survived its horizon."""
        self.clock = max(self.clock, clock)
        final = self.clock - policy.lateness_ms - policy.horizon_ms
        while self.snaps and self.snaps[0].ts < final:
            self._emit(self.snaps.pop(0), sid, self.clock, False, attrs, out)
        if self.group and self.alerted_at < final:
            out.outcomes.append((GROUPS[self.group], False))
            self.group = 0

    def label(self, churned: bool, ts: int, policy: LabelPolicy, sid: str,
              attrs: dict[str, float], out: Resolved) -> None:
        """A ``churn`` (churned) or ``active`` event at ``ts``. A label that labels
        snapshots is learned unless ``policy.max_labels`` learned ones lie within a horizon
        of it (before or after): then its snapshots are resolved but dropped
        (``label_cap``), so a flood of labels for one subscriber moves the model as one
        label does. A label with no snapshot to label changes nothing and is not counted."""
        emit = self._emit
        if any(snap.ts <= ts for snap in self.snaps):
            if sum(1 for t in self.labels if abs(t - ts) < policy.horizon_ms) \
                    < policy.max_labels:
                self.labels.append(ts)
            else:
                emit = self._capped
        if churned:
            keep = [s for s in self.snaps if s.ts > ts]
            out.drop("after_label", len(keep))
            for snap in self.snaps:
                if snap.ts <= ts:
                    emit(snap, sid, ts, snap.ts >= ts - policy.horizon_ms, attrs, out)
            self.snaps = []
            if self.group:
                if self.alerted_at <= ts:
                    out.outcomes.append((GROUPS[self.group], ts - self.alerted_at
                                         <= policy.horizon_ms))
                self.group = 0
            return
        while self.snaps and self.snaps[0].ts <= ts:
            emit(self.snaps.pop(0), sid, ts, False, attrs, out)

    def take(self, values: list[int | None] | int, attrs: Mapping[str, float],
             policy: LabelPolicy, out: Resolved) -> None:
        """A learnable scored row (:func:`learnable`, with the profile attributes it was
        scored with) at the clock becomes the period's snapshot (unless excluded)."""
        if self.clock < self.no_snapshot_until:
            return  # excluded after a retention action (or, in records stored by earlier
            # releases, a new subscriber's history warm-up): not counted
        if self.snaps and self.snaps[-1].ts // policy.every_ms == self.clock // policy.every_ms:
            return  # the period already has its snapshot
        self.snaps.append(Snapshot(self.clock, values, attrs))

    def alerted(self, ts: int, holdout: bool, policy: LabelPolicy, out: Resolved) -> None:
        """An alert at ``ts``: with actions (treated) or held out (no action)."""
        if not holdout:
            out.drop("treated", len(self.snaps))
            self.snaps = []
            self.no_snapshot_until = max(self.no_snapshot_until, ts + policy.exclusion_ms)
        if not self.group:
            self.group, self.alerted_at = (HOLDOUT if holdout else TREATED), ts

    def _values(self, snap: Snapshot) -> list[int | None]:
        if isinstance(snap.values, int):
            assert self.rows is not None, "a batch row index needs Book.rows"
            snap.values = self.rows(snap.values)
        return snap.values

    @staticmethod
    def _capped(snap: Snapshot, sid: str, label_ts: int, churned: bool,
                attrs: dict[str, float], out: Resolved) -> None:
        out.drop("label_cap", 1)

    def _emit(self, snap: Snapshot, sid: str, label_ts: int, churned: bool,
              attrs: dict[str, float], out: Resolved) -> None:
        values = self._values(snap)
        taken = dict(snap.attrs) if snap.attrs is not None else attrs
        out.examples.append(Example(f"{sid}/{snap.ts}", sid, snap.ts, label_ts, churned,
                                    values, taken))

    # ---- storage -------------------------------------------------------------------------
    def due(self, policy: LabelPolicy) -> int:
        """The earliest clock at which an event without label or alert can change this
        record: a new period, a snapshot or experiment surviving its horizon, the end of
        an exclusion."""
        final = policy.horizon_ms + policy.lateness_ms + 1
        if self.snaps:
            due = min((self.snaps[-1].ts // policy.every_ms + 1) * policy.every_ms,
                      self.snaps[0].ts + final)
        else:
            due = self.no_snapshot_until
        return min(due, self.alerted_at + final) if self.group else due

    def encode(self, policy: LabelPolicy, attrs: Mapping[str, float]) -> bytes:
        """:meth:`due` in seconds (4 bytes, rounded down), then compact msgpack: the clock,
        then everything else relative to it (ms), newest snapshot first. ``attrs`` are those
        stored in the same state value; the sixth element, ``[[i, changes], ...]``, says from
        row ``i`` on (until the next entry) the snapshots were taken with ``attrs`` updated
        by ``changes`` (a None value: the key was absent), usually ``[]``. Snapshots of
        unknown attributes are stored as taken with ``attrs``. A seventh element, only when
        there are any, holds the times of the labels learned that a label still accepted
        (within the lateness) can fall within a horizon of (relative to the clock)."""
        oldest = self.clock - policy.lateness_ms - policy.horizon_ms
        self.labels = [t for t in self.labels if t > oldest]
        if not (self.snaps or self.group or self.no_snapshot_until > self.clock
                or self.labels):
            return b""  # nothing pending: nothing stored (the next event restarts from zero)
        rows: list[list[int | None]] = []
        runs: list[list] = []
        prev, current = self.clock, attrs
        for i, snap in enumerate(reversed(self.snaps)):
            rows.append([prev - snap.ts, *self._values(snap)])
            prev = snap.ts
            taken = attrs if snap.attrs is None else snap.attrs
            if taken != current:
                runs.append([i, _changes(attrs, taken)])
                current = taken
        due = max(0, min(self.due(policy) // 1000, 0xFFFFFFFF))
        body = [self.clock, max(0, self.no_snapshot_until - self.clock),
                self.clock - self.alerted_at if self.group else 0, self.group, rows, runs]
        if self.labels:
            body.append([self.clock - t for t in self.labels])
        return due.to_bytes(DUE_BYTES, "little") + _encoder.encode(body)

    @classmethod
    def decode(cls, body: bytes, attrs: Mapping[str, float] | None = None) -> Book:
        """A stored record; ``attrs``: those stored in the same state value. Records written
        before snapshots kept their attributes (five elements) read them as unknown."""
        if not body:
            return cls()
        clock, treated, alerted, group, rows, *rest = _decoder.decode(body[4:])
        runs, labels = rest[:1], (rest[1] if len(rest) > 1 else [])
        base = attrs or {}
        starts = {i: changes for i, changes in runs[0]} if runs else {}
        current: Mapping[str, float] | None = base if runs else None
        snaps: list[Snapshot] = []
        ts = clock
        for i, row in enumerate(rows):
            ts -= row[0]
            if i in starts:
                current = _applied(base, starts[i])
            snaps.append(Snapshot(ts, row[1:], current))
        snaps.reverse()
        return cls(clock, clock + treated if treated else 0,
                   clock - alerted if group else 0, group, snaps,
                   labels=[clock - age for age in labels])


def _changes(base: Mapping[str, float], taken: Mapping[str, float]
             ) -> dict[str, float | int | None]:
    """What turns ``base`` into ``taken``: changed or added keys (whole numbers as ints, one
    msgpack byte when small), removed ones as None."""
    out: dict[str, float | int | None] = {
        k: int(v) if float(v).is_integer() else v
        for k, v in taken.items() if base.get(k) != v}
    out.update({k: None for k in base if k not in taken})
    return out


def _applied(base: Mapping[str, float], changes: Mapping[str, float | int | None]
             ) -> dict[str, float]:
    """:func:`_changes` undone: ``base`` updated by ``changes``."""
    out = {**base, **{k: None if v is None else float(v) for k, v in changes.items()}}
    return {k: v for k, v in out.items() if v is not None}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


DUE_BYTES = 4  # a record starts with its due time (seconds, uint32 little-endian)


def dues_of(lengths: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Stored records' :meth:`Book.due` (ms, rounded down to the second; 0 for an empty
    record), from their lengths and first :data:`DUE_BYTES` bytes
    (``features.values.StateValues.extension_heads``)."""
    seconds = np.ascontiguousarray(heads[:, :DUE_BYTES]).view("<u4")[:, 0].astype(np.int64)
    return np.where(lengths > 0, seconds * 1000, 0)
