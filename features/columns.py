"""A batch of events as the kernel's integer columns (store units: cents, thousandths)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from churnwatch.events import COMPLAINT_CATEGORIES, TYPE_CODE, Event
from features.kernel import COMPLAINT, PLAN, PROFILE, SPEND, USAGE, hash_ids
from features.schema import DAY_MS, months_of

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


def _floats(events: Sequence[Event], attr: str) -> np.ndarray:
    return np.fromiter((getattr(ev, attr) or 0.0 for ev in events), np.float64, len(events))


def encode_batch(events: Sequence[Event]) -> tuple[list[str], Columns]:
    """Distinct subscribers (first-seen order) and the batch's columns."""
    n = len(events)
    index: dict[str, int] = {}
    sub = np.fromiter((index.setdefault(ev.subscriber_id, len(index)) for ev in events),
                      np.int64, n)
    kind = np.fromiter((TYPE_CODE[ev.type] for ev in events), np.int64, n)
    ts = np.fromiter((ev.ts for ev in events), np.int64, n)
    # int(round(x * 100)) for every event at once: rint rounds half to even, as round() does
    cents = np.rint(_floats(events, "amount") * 100).astype(np.int64)
    fee = np.rint(_floats(events, "monthly_fee") * 100).astype(np.int64)
    data = np.rint(_floats(events, "data_mb") * 1000).astype(np.int64)
    voice = np.rint(_floats(events, "voice_min") * 1000).astype(np.int64)
    category = np.fromiter((_CATEGORY[ev.category or "other"] for ev in events),
                           np.int64, n)
    a = np.select([kind == SPEND, kind == COMPLAINT, kind == USAGE, kind == PLAN],
                  [cents, category, data, fee], 0)
    b = np.where(kind == USAGE, voice, 0)
    tenure = np.fromiter((-1.0 if ev.tenure_months is None else ev.tenure_months
                          for ev in events), np.float64, n)
    tenure[kind != PROFILE] = -1.0
    ids = [ev.event_id for ev in events]
    lengths = np.fromiter((len(s) for s in ids), np.int64, n)
    codes = np.frombuffer("".join(ids).encode("utf-32-le"), np.uint32)
    hashes = hash_ids(codes, lengths).view(np.int64)
    cols = Columns(sub, kind, ts, ts // DAY_MS, months_of(ts), a, b, tenure, hashes)
    return list(index), cols
