"""Reading states written by version 1 of the codec (day buckets, before the windows were
exact): each counted event of a day bucket becomes an entry at that day's first millisecond
(see ``features.codec``)."""


from __future__ import annotations

import numpy as np
from numba import njit

from features.kernel import (
    D_SIZE,
    D_TAG,
    D_VAL,
    DAY_MS,
    E_LOGIN,
    E_SPEND,
)
from features.varint import (
    get_signed,
)


@njit(cache=True)
def get_v1_buckets(buf, pos, st, today,  # type: ignore[no-untyped-def]
                    e_ts, e_code, e_amt, n, write):
    """Version 1's day buckets: usage into the usage ring, each login, spend and complaint
    as an entry at its day's first millisecond (a day's cents on its first spend); returns
    (new entry count, position). With ``write`` false, only counts the entries."""
    count = np.int64(buf[pos])
    pos += 1
    for _ in range(count):  # activity days: logins, data, voice
        age, pos = get_signed(buf, pos)
        day = today - age
        logins, pos = get_signed(buf, pos)
        data, pos = get_signed(buf, pos)
        voice, pos = get_signed(buf, pos)
        if write and (data != 0 or voice != 0):
            s = day % D_SIZE
            st[D_TAG + s] = day
            st[D_VAL + 2 * s] = data
            st[D_VAL + 2 * s + 1] = voice
        for _ in range(logins):
            if write:
                e_ts[n] = day * DAY_MS
                e_code[n] = E_LOGIN
                e_amt[n] = 0
            n += 1
    count = np.int64(buf[pos])
    pos += 1
    for _ in range(count):  # spend days: spends, cents
        age, pos = get_signed(buf, pos)
        spends, pos = get_signed(buf, pos)
        cents, pos = get_signed(buf, pos)
        for k in range(spends):
            if write:
                e_ts[n] = (today - age) * DAY_MS
                e_code[n] = E_SPEND
                e_amt[n] = cents if k == 0 else 0
            n += 1
    count = np.int64(buf[pos])
    pos += 1
    for _ in range(count):  # complaint days: 4 category counts
        age, pos = get_signed(buf, pos)
        for category in range(4):
            complaints, pos = get_signed(buf, pos)
            for _ in range(complaints):
                if write:
                    e_ts[n] = (today - age) * DAY_MS
                    e_code[n] = category
                    e_amt[n] = 0
                n += 1
    return n, pos
