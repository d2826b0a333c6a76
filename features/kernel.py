"""The feature kernels (numba): apply one event to a decoded subscriber state, and read its
features, with the semantics of docs/contract.md §3 and ``features.schema`` (a batch is applied by
``features.batch_kernel``).

A state is one int64 row of ``WIDTH`` values (plus a float64 tenure), and a list of the
subscriber's counted events. The row holds scalars, then ring buffers keyed by absolute day
or month (``slot = key % size``, a tag per slot): usage totals per UTC day and spend per
calendar month. A slot holds the newest key of its residue class, so every key a window can
still see is kept; an older key is reset when a newer one takes its slot. ``NONE`` marks an
absent scalar or empty slot.

The counted events are the logins, spends and complaints whose event time is still inside a
window: one entry each (event time in ms, ``E_*`` code, spend cents), kept in order of
(group: logins, spends, complaints; event time) for the codec, so the half-open
millisecond windows ``(now − 7d, now]``, ``(now − 35d, now − 7d]`` and ``(now − 30d, now]``
are a plain filter over them, exact whatever the arrival order. They are variable length per
subscriber, as are the seen event ids (64-bit hashes, with their event times): arrays the
caller owns, grown by :func:`reserve`. Money is in cents and usage in thousandths.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from churnwatch.core.events import TYPE_CODE
from churnwatch.core.units import DAY_MS

NONE = -(1 << 62)
APPLIED, DUPLICATE, LATE = ord("A"), ord("D"), ord("L")
# event type codes
SPEND, LOGIN, COMPLAINT, USAGE, PLAN, PROFILE = (
    TYPE_CODE[t] for t in ("spend", "login", "complaint", "usage", "plan_change", "profile"))
# entry codes of counted events: a complaint's category (0-3), a spend, a login
E_SPEND, E_LOGIN = 4, 5
# how long a counted event stays in a window (ms): logins (now − 35d, now], the rest 30 days
W7_MS, W30_MS, W35_MS = 7 * DAY_MS, 30 * DAY_MS, 35 * DAY_MS

# scalars: clock ts and month, first day, last spend/login/complaint/usage day, latest two plan
# changes (ts, fee cents), latest profile ts, month of the latest profile with a tenure
MX, MM, FD, LS, LL, LC, LU, T1, F1, T0, F0, AT, TM = range(13)
D_SIZE, M_SIZE = 35, 6
D_TAG = 13                      # usage days: data, voice
D_VAL = D_TAG + D_SIZE
M_TAG = D_VAL + 2 * D_SIZE      # spend months: cents
M_VAL = M_TAG + M_SIZE
WIDTH = M_VAL + M_SIZE
N_FEATURES = 28


def empty_states(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unknown subscribers: (states, tenure)."""
    states = np.zeros((n, WIDTH), dtype=np.int64)
    states[:, :D_VAL] = NONE
    states[:, M_TAG:M_VAL] = NONE
    return states, np.full(n, np.nan)


@njit(cache=True)
def reserve(e_ts, e_code, e_amt, n, extra):  # type: ignore[no-untyped-def]
    """The entry arrays with room for ``n + extra`` entries (the first ``n`` kept): the same
    arrays if they have it, else larger copies."""
    if n + extra <= len(e_ts):
        return e_ts, e_code, e_amt
    cap = max(2 * len(e_ts), n + extra, 16)
    ts2 = np.empty(cap, np.int64)
    code2 = np.empty(cap, np.int64)
    amt2 = np.empty(cap, np.int64)
    ts2[:n] = e_ts[:n]
    code2[:n] = e_code[:n]
    amt2[:n] = e_amt[:n]
    return ts2, code2, amt2


@njit(cache=True)
def clear_state(st):  # type: ignore[no-untyped-def]
    """Make ``st`` the state of an unknown subscriber, as :func:`empty_states` does for what
    is ever read: every scalar and ring tag NONE. (A slot's values are only read while its
    tag is a key inside a window, and reset when a key takes the slot.)"""
    for j in range(D_VAL):
        st[j] = NONE
    for j in range(M_TAG, M_VAL):
        st[j] = NONE


@njit(cache=True)
def _bucket(st, tag0, val0, width, size, key):  # type: ignore[no-untyped-def]
    """Offset of ``key``'s values in ``st`` (a stale slot is reset), or -1 if ``key`` is older
    than the slot's key, hence outside every window from now on."""
    s = key % size
    tag = st[tag0 + s]
    if tag != key:
        if tag > key:
            return -1
        st[tag0 + s] = key
        for j in range(width):
            st[val0 + width * s + j] = 0
    return val0 + width * s


@njit(cache=True)
def _since(nowday, day):  # type: ignore[no-untyped-def]
    return np.nan if day == NONE else float(nowday - day)


@njit(cache=True)
def features(st, tenure, now, nowmonth,  # type: ignore[no-untyped-def]
             e_ts, e_code, e_amt, lo, hi, out):
    """The 28 features (store units) of state ``st`` with counted events ``lo:hi`` of the
    entry arrays, at ``now`` (ms, not before the clock) and ``nowmonth``, into ``out``."""
    nowday = now // DAY_MS
    for k in range(6):
        out[k] = 0.0
    for s in range(M_SIZE):
        k = nowmonth - st[M_TAG + s]
        if 0 <= k <= 5:
            out[k] += st[M_VAL + s]
    d7 = d28 = v7 = v28 = 0
    for s in range(D_SIZE):
        k = nowday - st[D_TAG + s]
        p = D_VAL + 2 * s
        if 0 <= k < 7:
            d7 += st[p]
            v7 += st[p + 1]
        elif 7 <= k <= 34:
            d28 += st[p]
            v28 += st[p + 1]
    l7 = l28 = sn = sc = c0 = c1 = c2 = c3 = 0
    for j in range(lo, hi):
        age = now - e_ts[j]  # in (now − w, now] ⟺ 0 <= age < w
        if age < 0:
            continue
        code = e_code[j]
        if code == E_LOGIN:
            if age < W7_MS:
                l7 += 1
            elif age < W35_MS:
                l28 += 1
        elif age < W30_MS:
            if code == E_SPEND:
                sn += 1
                sc += e_amt[j]
            elif code == 0:
                c0 += 1
            elif code == 1:
                c1 += 1
            elif code == 2:
                c2 += 1
            else:
                c3 += 1
    out[6] = l7
    out[7] = l28
    out[8] = c0 + c1 + c2 + c3
    out[9] = c0
    out[10] = c1
    out[11] = c2
    out[12] = c3
    out[13] = sn
    out[14] = sc
    out[15] = nowday - (st[LS] if st[LS] != NONE else st[FD])
    out[16] = d7
    out[17] = d28
    out[18] = v7
    out[19] = v28
    has_plan = st[T1] != NONE
    out[20] = st[F1] if has_plan else np.nan
    out[21] = st[F1] - st[F0] if st[T0] != NONE else 0.0
    out[22] = nowday - st[T1] // DAY_MS if has_plan else np.nan
    out[23] = tenure + float(nowmonth - st[TM]) if st[TM] != NONE else np.nan
    out[24] = _since(nowday, st[LL])
    out[25] = _since(nowday, st[LC])
    out[26] = _since(nowday, st[LU])
    out[27] = float(nowday - st[FD])


@njit(cache=True)
def group_of(code):  # type: ignore[no-untyped-def]
    """The group of an entry code, in the order entries are kept: logins 0, spends 1,
    complaints 2."""
    if code == E_LOGIN:
        return 0
    if code == E_SPEND:
        return 1
    return 2


@njit(cache=True)
def settle(e_ts, e_code, e_amt, j):  # type: ignore[no-untyped-def]
    """Move entry ``j`` back to its place among the entries ``0:j``, which are in order of
    (group, event time): one step of an insertion sort, a few moves for a new event."""
    t, c, v = e_ts[j], e_code[j], e_amt[j]
    g = group_of(c)
    while j > 0:
        gp = group_of(e_code[j - 1])
        if gp < g or (gp == g and e_ts[j - 1] <= t):
            break
        e_ts[j] = e_ts[j - 1]
        e_code[j] = e_code[j - 1]
        e_amt[j] = e_amt[j - 1]
        j -= 1
    e_ts[j] = t
    e_code[j] = c
    e_amt[j] = v


@njit(cache=True)
def apply_event(st, tenure, k, t, d, month, a, b, ten,  # type: ignore[no-untyped-def]
                e_ts, e_code, e_amt, n):
    """Apply one event (not late, not a duplicate) to state ``st`` and its ``n`` counted
    events (in order of (group, event time); the arrays have room for one more): type code
    ``k``, ts, day, month, payload ``a``/``b`` (spend cents | complaint category | usage
    data, voice | plan fee cents) and profile tenure ``ten`` (-1: none). Returns (the
    tenure after it, the entry count)."""
    if st[MX] == NONE or t > st[MX]:
        st[MX] = t
        st[MM] = month
    if st[FD] == NONE or d < st[FD]:
        st[FD] = d
    if k == LOGIN:
        e_ts[n] = t
        e_code[n] = E_LOGIN
        e_amt[n] = 0
        settle(e_ts, e_code, e_amt, n)
        n += 1
        st[LL] = max(st[LL], d)
    elif k == SPEND:
        e_ts[n] = t
        e_code[n] = E_SPEND
        e_amt[n] = a
        settle(e_ts, e_code, e_amt, n)
        n += 1
        p = _bucket(st, M_TAG, M_VAL, 1, M_SIZE, month)
        if p >= 0:
            st[p] += a
        st[LS] = max(st[LS], d)
    elif k == COMPLAINT:
        e_ts[n] = t
        e_code[n] = a
        e_amt[n] = 0
        settle(e_ts, e_code, e_amt, n)
        n += 1
        st[LC] = max(st[LC], d)
    elif k == USAGE:
        p = _bucket(st, D_TAG, D_VAL, 2, D_SIZE, d)
        if p >= 0:
            st[p] += a
            st[p + 1] += b
        st[LU] = max(st[LU], d)
    elif k == PLAN:
        if st[T1] == NONE or t >= st[T1]:
            st[T0] = st[T1]
            st[F0] = st[F1]
            st[T1] = t
            st[F1] = a
        elif st[T0] == NONE or t >= st[T0]:
            st[T0] = t
            st[F0] = a
    elif k == PROFILE:
        if st[AT] == NONE or t >= st[AT]:
            st[AT] = t
            if ten >= 0:
                tenure = ten
                st[TM] = month
    return tenure, n


@njit(cache=True)
def read_features(states, tenure, now, month,  # type: ignore[no-untyped-def]
                  e_ts, e_code, e_amt, e_off):
    """Features of every known subscriber at (max(now, its clock), max(month, its month)),
    subscriber i's counted events being ``e_off[i]:e_off[i + 1]`` of the entry arrays;
    returns (known flags, one row per known subscriber)."""
    n = states.shape[0]
    known = np.zeros(n, np.bool_)
    rows = np.empty((n, N_FEATURES), np.float64)
    r = 0
    for i in range(n):
        st = states[i]
        if st[MX] == NONE:
            continue
        known[i] = True
        features(st, tenure[i], max(now, st[MX]), max(month, st[MM]), e_ts, e_code, e_amt,
                 e_off[i], e_off[i + 1], rows[r])
        r += 1
    return known, rows[:r]


@njit(cache=True)
def hash_ids(codes, lengths):  # type: ignore[no-untyped-def]
    """64-bit hashes of strings given as concatenated UTF-32 code points and their lengths
    (FNV-1a over code points and length, then a splitmix64 finaliser)."""
    out = np.empty(len(lengths), np.uint64)
    pos = 0
    for i in range(len(lengths)):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(pos, pos + lengths[i]):
            h = (h ^ np.uint64(codes[j])) * np.uint64(0x100000001B3)
        pos += lengths[i]
        h ^= np.uint64(lengths[i])
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out[i] = h ^ (h >> np.uint64(31))
    return out


def string_hashes(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strings as (their UTF-32 code points back to back, their lengths, their
    :func:`hash_ids` as int64)."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), np.uint32)
    return codes, lengths, hash_ids(codes, lengths).view(np.int64)
