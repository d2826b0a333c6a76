"""Snapshot records without Redis: their codec round trip and bound, the attributes a snapshot
keeps, older records still decoding."""

from __future__ import annotations

import dataclasses

from churnwatch.core.units import DAY_MS
from online_models.snapshots import Book, LabelPolicy

T0 = 1_778_371_200_000 + 9 * 3_600_000  # 09:00 UTC


def test_record_codec_round_trip_and_bound() -> None:
    policy = LabelPolicy()
    book = Book()
    from online_models.snapshots import Resolved

    out = Resolved()
    for day in range(200):
        attrs = {"contract_months_left": float(day // 30)}  # a profile update every 30 days
        book.advance(T0 + day * DAY_MS, policy, "s", attrs, out)
        book.take([day, None, -3, 1234567], attrs, policy, out)
        again = Book.decode(book.encode(policy, attrs), attrs)
        assert [(s.ts, s.values, s.attrs) for s in again.snaps] == \
            [(s.ts, s.values, s.attrs) for s in book.snaps]
        assert again.clock == book.clock
        # pending snapshots never span more than the horizon plus the lateness
        assert len(book.snaps) <= -(-(policy.horizon_ms + policy.lateness_ms)
                                    // policy.every_ms) + 1
    assert len(out.examples) > 0 and not any(ex.churned for ex in out.examples)
    assert all(ex.attrs == {"contract_months_left": float((ex.snapshot_ts - T0) // DAY_MS // 30)}
               for ex in out.examples)
    assert Book.decode(b"").snaps == []


def test_snapshot_keeps_the_attributes_it_was_taken_with() -> None:
    """A snapshot taken before a profile update is learned with the attributes the scorer saw
    then, not the later ones; stored as differences from the value's attributes, round trip
    included (also for a key the update removed)."""
    from online_models.snapshots import Resolved

    policy = LabelPolicy()
    old = {"contract_months_left": 1.0, "monthly_fee": 25.0, "devices": 2.0}
    new = {"contract_months_left": 12.0, "monthly_fee": 25.0}
    book, out = Book(), Resolved()
    book.advance(T0, policy, "s", old, out)
    book.take([1, 2], old, policy, out)
    book.advance(T0 + 20 * DAY_MS, policy, "s", new, out)
    book.take([3, 4], new, policy, out)
    body = book.encode(policy, new)
    unchanged = Book(book.clock, snaps=[dataclasses.replace(s, attrs=new) for s in book.snaps])
    # only the changed keys are stored, once: whole numbers in a byte, a removed key as nil
    assert len(body) - len(unchanged.encode(policy, new)) <= \
        len("contract_months_left") + len("devices") + 8
    book = Book.decode(body, new)
    assert [s.attrs for s in book.snaps] == [old, new]
    book.label(True, T0 + 30 * DAY_MS, policy, "s", new, out)
    assert [(ex.snapshot_ts, ex.attrs) for ex in out.examples] == [
        (T0, old), (T0 + 20 * DAY_MS, new)]


def test_records_stored_before_snapshots_kept_attributes_still_decode() -> None:
    """A record of five elements (no attribute runs) reads as snapshots of unknown attributes,
    learned with those at resolution, as before; re-encoded, they are pinned to the value's."""
    import msgspec

    from online_models.snapshots import Resolved

    policy = LabelPolicy()
    legacy = (0).to_bytes(4, "little") + msgspec.msgpack.encode(
        [T0 + DAY_MS, 0, 0, 0, [[DAY_MS, 5, None]]])
    attrs = {"age": 40.0}
    book = Book.decode(legacy, attrs)
    assert [(s.ts, s.values, s.attrs) for s in book.snaps] == [(T0, [5, None], None)]
    out = Resolved()
    book.label(False, T0 + 2 * DAY_MS, policy, "s", attrs, out)
    assert [ex.attrs for ex in out.examples] == [attrs]
    again = Book.decode(legacy, attrs)
    assert Book.decode(again.encode(policy, attrs), attrs).snaps[0].attrs == attrs
