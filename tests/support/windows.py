"""States as versions 1 (day buckets) and 2 (bucket ages as varints) of the feature codec
wrote them, for the tests that read old states on, and the calendar helpers of the
exact-window tests."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from churnwatch.core.events import COMPLAINT_CATEGORIES, Event
from churnwatch.core.units import DAY_MS
from features.codec import VERSION, VERSION_1, VERSION_2
from features.kernel import D_SIZE, M_SIZE, string_hashes
from features.schema import (
    month_of,
    to_cents,
    to_milli,
)

LATENESS = 7 * DAY_MS


def _zz(v: int) -> bytes:
    z = v * 2 if v >= 0 else -v * 2 - 1
    out = bytearray()
    while z >= 128:
        out.append((z & 127) | 128)
        z >>= 7
    out.append(z)
    return bytes(out)


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """A zigzag LEB128 varint at ``pos``: (value, next position)."""
    z = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        z |= (byte & 127) << shift
        if byte < 128:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7


def v2_value(value: bytes) -> bytes:
    """A value of the current codec (version 3) as version 2 wrote the same state: each day
    and month bucket with its age (a varint) after a count byte, in ring order, instead of
    the bits of the kept ones."""
    assert value[0] == VERSION
    mx, pos = _varint(value, 1)
    mm, pos = _varint(value, pos)
    _, pos = _varint(value, pos)
    flags, pos = _varint(value, pos)
    fields = sum(bool(flags & (1 << k)) for k in range(4)) + 2 * bool(flags & 16) + \
        2 * bool(flags & 32) + bool(flags & 64) + bool(flags & 128)
    for _ in range(fields):
        _, pos = _varint(value, pos)
    pos += 8 if flags & 128 else 0
    out = bytearray([VERSION_2]) + value[1:pos]
    for now, size, width in ((mx // DAY_MS, D_SIZE, 2), (mm, M_SIZE, 1)):
        bits = shift = 0
        while True:  # an unsigned varint
            bits |= (value[pos] & 127) << shift
            pos, shift = pos + 1, shift + 7
            if value[pos - 1] < 128:
                break
        kept = []
        for age in range(size):
            if bits >> age & 1:
                start = pos
                for _ in range(width):
                    _, pos = _varint(value, pos)
                kept.append(((now - age) % size, _zz(age) + value[start:pos]))
        out += bytes([len(kept)]) + b"".join(entry for _, entry in sorted(kept))
    return bytes(out + value[pos:])


def v1_value(events: Sequence[Event]) -> bytes:
    """The value the store wrote before the windows were exact (codec version 1, no
    attributes) for these accepted events of one subscriber (in arrival order, no profile)."""
    mx = max(ev.ts for ev in events)
    today, mm = mx // DAY_MS, month_of(mx)
    days = {k: [ev.ts // DAY_MS for ev in events if ev.type == k]
            for k in ("spend", "login", "complaint", "usage")}
    plans: list[Event] = []
    for ev in events:  # the latest two plan changes, by time (ties: arrival)
        if ev.type == "plan_change":
            plans = sorted(plans + [ev], key=lambda e: e.ts)[-2:]
    flags = sum(1 << k for k, name in enumerate(days) if days[name])
    flags |= (16 if plans else 0) | (32 if len(plans) == 2 else 0)
    out = bytearray([VERSION_1]) + _zz(mx) + _zz(mm)
    out += _zz(today - min(ev.ts // DAY_MS for ev in events)) + _zz(flags)
    for name in days:
        if days[name]:
            out += _zz(today - max(days[name]))
    for plan in reversed(plans):
        out += _zz(mx - plan.ts) + _zz(to_cents(plan.monthly_fee))

    def ring(buckets: dict[int, list[int]], now: int, size: int) -> bytes:
        """Non-empty buckets by age, in the kernel's ring order (slot ``key % size``)."""
        kept = sorted((age, vals) for age, vals in buckets.items() if any(vals))
        kept.sort(key=lambda item: (now - item[0]) % size)
        return bytes([len(kept)]) + b"".join(_zz(age) + b"".join(map(_zz, vals))
                                             for age, vals in kept)

    activity: dict[int, list[int]] = {}
    spends: dict[int, list[int]] = {}
    complaints: dict[int, list[int]] = {}
    months: dict[int, list[int]] = {}
    for ev in events:
        age = today - ev.ts // DAY_MS
        if ev.type in ("login", "usage") and age < 35:
            bucket = activity.setdefault(age, [0, 0, 0])
            if ev.type == "login":
                bucket[0] += 1
            else:
                bucket[1] += to_milli(ev.data_mb or 0)
                bucket[2] += to_milli(ev.voice_min or 0)
        elif ev.type == "complaint" and age < 30:
            complaints.setdefault(age, [0, 0, 0, 0])[COMPLAINT_CATEGORIES.index(ev.category)] += 1
        if ev.type == "spend":
            if age < 30:
                bucket = spends.setdefault(age, [0, 0])
                bucket[0] += 1
                bucket[1] += to_cents(ev.amount)
            if mm - month_of(ev.ts) < 6:
                months.setdefault(mm - month_of(ev.ts), [0])[0] += to_cents(ev.amount)
    out += (ring(activity, today, 35) + ring(spends, today, 30) + ring(complaints, today, 30)
            + ring(months, mm, 6))
    seen = [ev for ev in events if ev.ts >= mx - LATENESS]
    out += _zz(len(seen))
    hashes = string_hashes([ev.event_id for ev in seen])[2].tolist()
    for ev, h in zip(seen, hashes):
        out += h.to_bytes(8, "little", signed=True) + _zz(mx - ev.ts)
    return bytes(out) + b"\x80"


def _at_midnight(ev: Event) -> Event:
    """``ev`` as version 1 kept it: a counted event at its day's first millisecond."""
    if ev.type not in ("login", "spend", "complaint"):
        return ev
    return msgspec.structs.replace(ev, ts=ev.ts - ev.ts % DAY_MS)
