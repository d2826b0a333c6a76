"""A batch of events as the kernel's integer columns (store units: cents, thousandths)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Sequence

import numpy as np

from churnwatch.core.events import COMPLAINT_CATEGORIES, TYPE_CODE, Event
from churnwatch.core.units import DAY_MS
from features.kernel import COMPLAINT, PLAN, PROFILE, SPEND, USAGE, string_hashes
from features.schema import months_of

_CATEGORY = {name: code for code, name in enumerate(COMPLAINT_CATEGORIES)}


@dataclass(frozen=True)
class Columns:
    """Event i of the batch: ``sub[i]`` indexes the distinct subscribers (first-seen order);
    ``a``/``b`` are the payload (spend cents | complaint category | usage data, voice |
    plan fee cents), ``tenure`` a profile's tenure in months (-1: none), ``ids`` the 64-bit
    hash of the event id."""

    sub: np.ndarray
    kind: np.ndarray
    ts: np.ndarray
    day: np.ndarray
    month: np.ndarray
    a: np.ndarray
    b: np.ndarray
    tenure: np.ndarray
    ids: np.ndarray


_SUBSCRIBER, _TYPE, _TS, _ID = (attrgetter(name) for name in
                                ("subscriber_id", "type", "ts", "event_id"))


def _of(events: Sequence[Event], rows: np.ndarray, name: str) -> list:
    """Attribute ``name`` of the events at ``rows``."""
    return list(map(attrgetter(name), map(events.__getitem__, rows.tolist())))


def _scaled(values: list, scale: int) -> np.ndarray:
    """int(round(x * scale)) for each value (None: 0); rint rounds half to even, as round()."""
    floats = np.array([0.0 if v is None else v for v in values], np.float64)
    return np.rint(floats * scale).astype(np.int64)


def encode_batch(events: Sequence[Event]) -> tuple[list[str], Columns]:
    """Distinct subscribers (first-seen order) and the batch's columns."""
    n = len(events)
    ids = list(map(_SUBSCRIBER, events))
    subscribers = list(dict.fromkeys(ids))
    index = dict(zip(subscribers, range(len(subscribers))))
    sub = np.fromiter(map(index.__getitem__, ids), np.int64, n)
    kind = np.fromiter(map(TYPE_CODE.__getitem__, map(_TYPE, events)), np.int64, n)
    ts = np.fromiter(map(_TS, events), np.int64, n)
    a = np.zeros(n, np.int64)
    b = np.zeros(n, np.int64)
    tenure = np.full(n, -1.0)
    for code, rows in ((k, np.flatnonzero(kind == k)) for k in (SPEND, COMPLAINT, USAGE, PLAN,
                                                                 PROFILE)):
        if not len(rows):
            continue
        if code == SPEND:
            a[rows] = _scaled(_of(events, rows, "amount"), 100)
        elif code == COMPLAINT:
            a[rows] = [_CATEGORY[c or "other"] for c in _of(events, rows, "category")]
        elif code == USAGE:
            a[rows] = _scaled(_of(events, rows, "data_mb"), 1000)
            b[rows] = _scaled(_of(events, rows, "voice_min"), 1000)
        elif code == PLAN:
            a[rows] = _scaled(_of(events, rows, "monthly_fee"), 100)
        else:
            tenure[rows] = [-1.0 if t is None else t for t in _of(events, rows, "tenure_months")]
    hashes = string_hashes(list(map(_ID, events)))[2]
    return subscribers, Columns(sub, kind, ts, ts // DAY_MS, months_of(ts), a, b, tenure, hashes)


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` grouped by key (a stable sort: in order within each group) and
    where each group starts among them: group g is ``order[starts[g]:starts[g + 1]]``."""
    order = np.argsort(keys, kind="stable")
    grouped = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1]))) \
        if len(keys) else np.empty(0, np.int64)
    return order, starts
