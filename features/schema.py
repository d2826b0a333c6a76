"""Feature names, units and window definitions shared by the store, the rules and the model.

"now" for a subscriber is its event-time clock: the latest event time seen for it (epoch ms;
a read at a later time, such as the silence sweep's watermark, moves it forward). Days are
UTC days (``ts // 86_400_000``), months are UTC calendar months.

The windows of counted events are half-open and exact to the millisecond, whatever the order
events arrive in: ``logins_7d`` counts logins with ``now − 7d < ts <= now``, ``logins_prev28``
those with ``now − 35d < ts <= now − 7d``; ``complaints_30d`` (and its per-category counts),
``spend_count_30d`` and ``spend_amount_30d`` take ``now − 30d < ts <= now`` (``d`` is
86,400,000 ms). So a login exactly 7 days
before now is in ``logins_prev28``, one a millisecond later in ``logins_7d``, and at 00:00 UTC
the last 7 days include all of the 7th day back.

Usage totals (``data_mb_*``, ``voice_min_*``) are kept per UTC day: ``7d`` is now's day and the
6 days before it, ``prev28`` the 28 days before those. ``spend_mK`` is spend in the K-th
complete calendar month before now's month (``spend_m0`` is the month to date);
``recency_days``, ``days_since_*`` and ``history_days`` (since the day of the earliest event the
store holds for the subscriber: how long it has watched it) are differences of UTC day numbers.
"""

from __future__ import annotations

import numpy as np

from churnwatch.core.units import DAY_MS

FEATURES: tuple[str, ...] = (
    "spend_m0",
    "spend_m1",
    "spend_m2",
    "spend_m3",
    "spend_m4",
    "spend_m5",
    "logins_7d",
    "logins_prev28",
    "complaints_30d",
    "complaints_network_30d",
    "complaints_billing_30d",
    "complaints_service_30d",
    "complaints_other_30d",
    "spend_count_30d",
    "spend_amount_30d",
    "recency_days",
    "data_mb_7d",
    "data_mb_prev28",
    "voice_min_7d",
    "voice_min_prev28",
    "monthly_fee",
    "fee_delta",
    "days_since_plan_change",
    "tenure_months",
    "days_since_login",
    "days_since_complaint",
    "days_since_usage",
    "history_days",
)
INDEX = {name: i for i, name in enumerate(FEATURES)}

# Money travels as integer cents and usage as integer thousandths inside the store, so sums
# are exact whatever the order of events; these factors turn them back into units.
_CENTS = ("spend_m0", "spend_m1", "spend_m2", "spend_m3", "spend_m4", "spend_m5",
          "spend_amount_30d", "monthly_fee", "fee_delta")
_MILLI = ("data_mb_7d", "data_mb_prev28", "voice_min_7d", "voice_min_prev28")
DIVISOR = np.array(
    [100.0 if n in _CENTS else 1000.0 if n in _MILLI else 1.0 for n in FEATURES],
    dtype=np.float64,
)


def to_cents(amount: float) -> int:
    """Currency units → integer cents (round half away from zero)."""
    return int(round(amount * 100))


def to_milli(value: float) -> int:
    """Usage units → integer thousandths."""
    return int(round(value * 1000))


def day_of(ts_ms: int) -> int:
    """UTC day index of an epoch-millisecond timestamp."""
    return ts_ms // DAY_MS


def month_of(ts_ms: int) -> int:
    """UTC calendar month index (months since 1970-01) of an epoch-millisecond timestamp."""
    return int(np.datetime64(ts_ms, "ms").astype("datetime64[M]").astype(np.int64))


def months_of(ts_ms: np.ndarray) -> np.ndarray:
    """Vectorised :func:`month_of`."""
    return ts_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def as_dict(row: np.ndarray) -> dict[str, float]:
    """A feature row as name → value."""
    return {name: float(row[i]) for i, name in enumerate(FEATURES)}
