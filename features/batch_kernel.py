"""The stage's kernel (numba): a batch applied to its subscribers' stored values, one
subscriber at a time.

For each subscriber of the batch, :func:`stage_values` decodes its stored value into one
scratch state and scratch lists of its counted events and seen ids (``features.codec``),
applies its events in arrival order
(``features.kernel.apply_event``) and encodes the new value at once, while that state is
still in the CPU's cache: no state array for the whole batch, and no table of every seen id.
An event is late if it is older than the subscriber's clock minus the lateness, and a
duplicate if its id hash is among the ids seen within the lateness (kept in the value) or
applied earlier in the batch. The new value keeps the ids not older than its clock minus the
lateness, and the old value's tail (extension frame, attributes) unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from churnwatch.core.memcopy import copy
from features.codec import (
    EMPTY_ATTRS,
    MAX_HEAD,
    attrs_start,
    decode_head,
    encode_head,
    entries_bound,
    get_seen,
    known,
    put_count,
    put_seen,
)
from features.kernel import (
    APPLIED,
    AT,
    DUPLICATE,
    LATE,
    MM,
    MX,
    N_FEATURES,
    NONE,
    WIDTH,
    apply_event,
    clear_state,
    features,
    reserve,
)

__all__ = ["stage_values"]


@njit(cache=True)
def stage_values(src, off, sub, kind, ts, day, month,  # type: ignore[no-untyped-def]
                 a, b, ten, ids, lateness):
    """Apply events to the stored values ``src[off[i]:off[i + 1]]`` of the batch's ``n``
    subscribers (empty: unknown). Event e: subscriber index ``sub[e]``, type code, ts, day,
    month, payload ``a``/``b``, profile tenure ``ten`` (-1: none), id hash ``ids[e]``.

    Returns (status per event, a feature row per applied event in arrival order, the new
    values as one buffer with ``n + 1`` offsets and each one's blob length, each
    subscriber's clock and latest profile time before the batch (NONE: none), where each
    old value's tail starts in ``src``, and the index of the first subscriber whose value
    is of a version it cannot read (-1: none; nothing else is then valid))."""
    n, n_ev = len(off) - 1, len(sub)
    order = np.argsort(sub, kind="mergesort")  # each subscriber's events, in arrival order
    first = np.zeros(n + 1, np.int64)
    for e in range(n_ev):
        first[sub[e] + 1] += 1
    first = np.cumsum(first)
    size = 0
    for i in range(n):
        size += off[i + 1] - off[i] + MAX_HEAD + 50 + 40 * (first[i + 1] - first[i])
    buf = np.empty(size, np.uint8)
    new_off = np.zeros(n + 1, np.int64)
    blob_len = np.zeros(n, np.int64)
    clock_before = np.full(n, NONE, np.int64)
    profile_before = np.full(n, NONE, np.int64)
    old_tail = off[:-1].copy()
    status = np.empty(n_ev, np.uint8)
    rows = np.empty((n_ev, N_FEATURES), np.float64)
    st = np.empty(WIDTH, np.int64)
    tenure_box = np.empty(1, np.float64)
    bits_box = tenure_box.view(np.int64)
    cap = 64
    seen_hash = np.empty(cap, np.int64)
    seen_ts = np.empty(cap, np.int64)
    e_ts = np.empty(cap, np.int64)
    e_code = np.empty(cap, np.int64)
    e_amt = np.empty(cap, np.int64)
    pos = 0
    for i in range(n):
        clear_state(st)
        tenure_box[0] = np.nan
        start, end = off[i], off[i + 1]
        count, tail, n_e = 0, start, 0
        if start < end:
            if not known(src[start]):
                return status, rows[:0], buf[:0], new_off, blob_len, clock_before, \
                    profile_before, old_tail, i
            bound = entries_bound(src, start, end, st) + first[i + 1] - first[i]
            if bound > len(e_ts):
                e_ts, e_code, e_amt = reserve(e_ts, e_code, e_amt, 0, bound)
            count, p, bits_box[0], n_e = decode_head(src, start, st, e_ts, e_code, e_amt, 0)
            if count + first[i + 1] - first[i] > cap:
                while cap < count + first[i + 1] - first[i]:
                    cap *= 2
                seen_hash = np.empty(cap, np.int64)
                seen_ts = np.empty(cap, np.int64)
            for j in range(count):
                seen_hash[j], seen_ts[j], p = get_seen(src, p, st[MX])
            tail = old_tail[i] = p
        elif first[i + 1] - first[i] > cap:
            while cap < first[i + 1] - first[i]:
                cap *= 2
            seen_hash = np.empty(cap, np.int64)
            seen_ts = np.empty(cap, np.int64)
        if n_e + first[i + 1] - first[i] > len(e_ts):  # (unknown subscriber)
            e_ts, e_code, e_amt = reserve(e_ts, e_code, e_amt, n_e, first[i + 1] - first[i])
        clock_before[i] = st[MX]
        profile_before[i] = st[AT]
        tenure = tenure_box[0]
        for q in range(first[i], first[i + 1]):
            e = order[q]
            t = ts[e]
            if st[MX] != NONE and t < st[MX] - lateness:
                status[e] = LATE
                continue
            h = ids[e]
            duplicate = False
            for j in range(count):
                if seen_hash[j] == h:
                    duplicate = True
                    break
            if duplicate:
                status[e] = DUPLICATE
                continue
            status[e] = APPLIED
            seen_hash[count] = h
            seen_ts[count] = t
            count += 1
            tenure, n_e = apply_event(st, tenure, kind[e], t, day[e], month[e], a[e], b[e],
                                      ten[e], e_ts, e_code, e_amt, n_e)
            features(st, tenure, st[MX], st[MM], e_ts, e_code, e_amt, 0, n_e, rows[e])
        new_off[i] = pos
        if st[MX] != NONE:  # (else nothing known, nothing applied: the value stays empty)
            need = pos + MAX_HEAD + 20 * n_e + 10 + 18 * count + end - tail + 1
            if need > len(buf):  # (a version 1 value's day buckets became many entries)
                bigger = np.empty(max(need, 2 * len(buf)), np.uint8)
                copy(bigger, 0, buf, 0, pos)
                buf = bigger
            tenure_box[0] = tenure
            pos = encode_head(buf, pos, st, bits_box[0], e_ts, e_code, e_amt, n_e)
            horizon = st[MX] - lateness
            kept = 0
            for j in range(count):
                if seen_ts[j] >= horizon:
                    kept += 1
            pos = put_count(buf, pos, kept)
            for j in range(count):
                if seen_ts[j] >= horizon:
                    pos = put_seen(buf, pos, seen_hash[j], st[MX] - seen_ts[j])
            blob_len[i] = pos - new_off[i]
            copy(buf, pos, src, tail, end - tail)
            pos += end - tail
            if attrs_start(src, tail, end) == end:
                buf[pos] = EMPTY_ATTRS
                pos += 1
    new_off[n] = pos
    applied = 0
    for e in range(n_ev):
        if status[e] == APPLIED:
            if applied != e:
                rows[applied] = rows[e]
            applied += 1
    return status, rows[:applied], buf[:pos], new_off, blob_len, clock_before, \
        profile_before, old_tail, -1
