"""Synthetic telecom telemetry feed with designed churners (demo, tests, benchmarks).

Events follow docs/contract.md §2. Churners show the §3 warning signs in exactly the windows the
indicators look at, so the 2-of-3 rule can be checked against a known ground truth (`Truth`).
Events are produced day by day (lazily) in non-decreasing event time, deterministically for a
seed; optional faults (duplicates, late events, invalid events) are injected on request.

Churn and labels arrive as in an operator's stream, so a model learning from them online sees
both outcomes throughout the run. Churn days are uniform after a warm-up (`WARMUP_DAYS`: the
indicators look back up to 35 days), as operators lose customers every month; each churner's
signs are drawn among those its history can show by then (a spend decline needs 4 complete
months). `active` (a confirmed negative label) comes from contract renewals: when its term
ends (`contract_months_left` in its profile, on its own billing day, then every
`RENEWAL_MONTHS`) a staying subscriber renews, confirmed by the billing run at the end of that
day, and the BSS sends its profile with the new term the next day; `ROLLING_SHARE` go
month-to-month instead (no label, profile unchanged). Churners never renew. Everyone else is
labelled only by surviving the label horizon; nothing marks the end of the run.

Not all churn trips the operators' indicators (much is a switch to a competitor's offer):
`QUIET_SHARE` of churners have no designed sign, only what the rules do not watch
(`Truth.drivers`): usage at 25-50 % of their own level for their last 4-6 weeks (traffic moved
to the new SIM), for half a plan downgrade in their last 2 months, for 40 % one network
complaint in their last month. Stayers show the same as noise: `USAGE_DIP_SHARE` have one 2-5
week usage dip (holiday, second SIM), 3 % change plan, all complain at the base rate. Churners
also have shorter tenure, 0-2 contract months left, and use 40 % less in their last 3 weeks.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

import numpy as np

from churnwatch.core.units import DAY_MS, HOUR_MS

EDGE_MS = 60_000  # ordinary events avoid the first and last minute of a day
LATE_MS = 47 * HOUR_MS  # late events are held back < 47 h (behind the stream head < 2 days)
SIGNS = ("spend_decline", "login_drop", "complaints")
CATEGORIES = ("network", "billing", "service", "other")
_CAT_P = (0.35, 0.30, 0.25, 0.10)
_TYPES = ("profile", "usage", "login", "spend", "complaint", "plan_change", "churn", "active")
# persona: share, monthly spend range, payments a month, logins/week range, plan, fee,
# spend kinds, usage means (data_mb, voice_min, sms a day), tenure mean (months)
PERSONAS = {
    "high_end_business": (0.10, (800, 1500), 5, (5, 10), "business-unlimited", 95.0,
                          ("bill", "purchase"), (300, 40, 5), 60),
    "family": (0.25, (240, 380), 3, (5, 10), "family-share", 60.0, ("bill", "purchase"),
               (500, 20, 4), 40),
    "young": (0.25, (125, 190), 2, (6, 10), "youth-data", 30.0, ("recharge", "purchase"),
              (1500, 8, 10), 14),
    "regular": (0.38, (15, 85), 1, (5, 9), "standard", 25.0, ("recharge", "bill"),
                (200, 15, 3), 30),
    "silent": (0.02, (10, 30), 1, (0, 1), "prepaid-basic", 10.0, ("recharge",), (20, 2, 0.5), 24),
}
WARMUP_DAYS = 45  # churn starts after this: the indicators look back up to 35 days
RENEWAL_MONTHS = 12  # a renewed contract's term
ROLLING_SHARE = 0.4  # stayers who go month-to-month when their term ends (no renewal)
QUIET_SHARE = 0.15  # churners who leave without any designed operator indicator
USAGE_DIP_SHARE = 0.06  # staying subscribers with one temporary usage dip
_FIRST_PAY = {5: (3, 6), 3: (7, 10), 2: (12, 15), 1: (28, 0)}  # payments: (first-day range, step)


@dataclass(frozen=True)
class SimConfig:
    """Feed size and shape; `start` must be a UTC month start; fault rates are per event."""
    subscribers: int = 1000
    days: int = 150
    churn_rate: float = 0.08
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)
    duplicate_rate: float = 0.0
    invalid_rate: float = 0.0
    out_of_order_rate: float = 0.0


@dataclass(frozen=True)
class Truth:
    """Ground truth (ids canonical, `+digits`): designed `warning_signs` (empty for most) and
    `drivers` (signals the rules do not watch: `usage_decline`, `downgrade`, `network_complaint`);
    churners are evaluated on the day before `churn_day`, others at the end."""
    churners: frozenset[str]
    churn_day: dict[str, int]
    warning_signs: dict[str, frozenset[str]]
    segments: dict[str, str]
    drivers: dict[str, frozenset[str]]
    duplicates: int = 0
    invalid: int = 0
    out_of_order: int = 0
    total_events: int = 0

    def __repr__(self) -> str:
        return (f"Truth(subscribers={len(self.segments)}, churners={len(self.churners)}, "
                f"duplicates={self.duplicates}, invalid={self.invalid}, "
                f"out_of_order={self.out_of_order}, total_events={self.total_events})")


def _rfc3339(ms: int) -> str:
    t = datetime.fromtimestamp(ms // 1000, timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _id_formats(num: int) -> tuple[str, ...]:
    n = f"79{num:08d}"
    return ("+44" + n, f"+44 {n[:4]} {n[4:]}", f"+44-{n[:4]}-{n[4:7]}-{n[7:]}", "0044" + n,
            f"0044 {n[:4]} {n[4:]}")


class Simulation:
    """`Simulation(cfg).events()` yields the feed (re-iterable, same events each time);
    `.truth` is the ground truth, known before iteration."""

    def __init__(self, cfg: SimConfig = SimConfig()):
        if cfg.subscribers < 1 or cfg.days < 1:
            raise ValueError("subscribers and days must be >= 1")
        for r in (cfg.churn_rate, cfg.duplicate_rate, cfg.invalid_rate, cfg.out_of_order_rate):
            if not 0.0 <= r <= 1.0:
                raise ValueError("rates must be in [0, 1]")
        st = cfg.start if cfg.start.tzinfo else cfg.start.replace(tzinfo=timezone.utc)
        if st.utcoffset() != timedelta(0) or st.day != 1 or st.time() != datetime.min.time():
            raise ValueError("start must be a UTC month start (day 1, 00:00)")
        self.cfg, self._start_ms = cfg, int(st.timestamp() * 1000)
        plan_ss, self._emit_ss, fault_ss = np.random.SeedSequence(cfg.seed).spawn(3)
        dates = [st + timedelta(days=d) for d in range(cfg.days)]
        self._month = np.array([(t.year - st.year) * 12 + t.month - st.month for t in dates])
        self._month_start = np.searchsorted(self._month, np.arange(self._month[-1] + 2))
        self._plan(np.random.default_rng(plan_ss))
        self.truth = self._faults(np.random.default_rng(fault_ss))

    # ---------------------------------------------------------------- planning
    def _plan(self, rng: np.random.Generator) -> None:
        cfg, n, days = self.cfg, self.cfg.subscribers, self.cfg.days
        names = list(PERSONAS)
        counts = [int(PERSONAS[p][0] * n) for p in names]
        counts[names.index("regular")] += n - sum(counts)
        persona = rng.permutation(np.repeat(np.arange(len(names)), counts))
        self._ids = [_id_formats(int(x)) for x in rng.choice(10**8, n, replace=False)]
        canon = [f[0] for f in self._ids]
        silent = names.index("silent")
        self._churn = np.full(n, days)  # first day a subscriber sends nothing but `churn`
        signs: list[frozenset[str]] = [frozenset()] * n
        evals = np.full(n, days)  # day whose start ends the evaluation window
        dominant = rng.choice(CATEGORIES[:3], n, p=(0.5, 0.35, 0.15))
        pool = rng.permutation(np.nonzero(persona != silent)[0])
        n_ch = min(len(pool), round(cfg.churn_rate * n))
        churners, others = pool[:n_ch], pool[n_ch:]
        lo = max(min(WARMUP_DAYS, math.ceil(2 * days / 3), days - 1), 1)
        n1, n3, nq = round(0.10 * n_ch), round(0.35 * n_ch), round(QUIET_SHARE * n_ch)
        for j, s in enumerate(churners):  # churn day uniform after the warm-up, then the signs
            k = 1 if j < n1 else 3 if j < n1 + n3 else 0 if j < n1 + n3 + nq else 2  # (feasible)
            e = int(rng.integers(lo, days)) if days > 1 else 0
            can = sorted(self._feasible(set(SIGNS), e), key=SIGNS.index)
            want = set(rng.choice(can, min(k, len(can)), replace=False).tolist()) if k and can else set()
            self._churn[s] = evals[s] = e
            signs[s] = frozenset(want)
        m = len(others)
        for j, s in enumerate(others[: round(0.02 * m) + round(0.005 * m)]):
            want = set(rng.choice(SIGNS, 1 if j < round(0.02 * m) else 2, replace=False).tolist())
            signs[s] = self._feasible(want, days)
        drivers: list[frozenset[str]] = [frozenset()] * n  # quiet leavers, then usage dips
        self._dip = np.zeros((3, n))  # first day, end day, usage factor
        for s in churners[n1 + n3:n1 + n3 + nq]:
            e = int(evals[s])
            drivers[s] = frozenset({"usage_decline"} | {d for d, q in (
                ("downgrade", 0.5), ("network_complaint", 0.4)) if rng.random() < q})
            self._dip[:, s] = (max(e - int(rng.integers(28, 43)), 0), e, rng.uniform(0.25, 0.5))
        for s in rng.choice(others, round(USAGE_DIP_SHARE * m), replace=False):
            start = int(rng.integers(0, days))
            self._dip[:, s] = (start, start + int(rng.integers(14, 36)), rng.uniform(0.25, 0.6))
            drivers[s] = frozenset({"usage_decline"})
        for s in np.nonzero(persona == silent)[0]:  # spend only early in month 0, then nothing
            signs[s] = frozenset({"spend_decline"}) if self._month[days - 1] == 4 else frozenset()
        # logins: daily Poisson, designed drops reshaped so the §3 windows see them
        p = [PERSONAS[names[i]] for i in persona]
        rate = np.array([rng.uniform(*x[3]) for x in p]) / 7
        drop = np.array(["login_drop" in sg for sg in signs])
        rate[drop] = np.maximum(rate[drop], rng.uniform(7, 10, drop.sum()) / 7)
        logins = np.empty((days, n), np.uint16)
        for a in range(0, n, 8192):
            logins[:, a:a + 8192] = rng.poisson(rate[a:a + 8192], (days, min(8192, n - a)))
        for s in np.nonzero(drop)[0]:
            e, ld = int(evals[s]), int(rng.integers(8, 11))
            col = logins[:, s]
            col[e - ld - 14:e - ld] = rng.binomial(col[e - ld - 14:e - ld], 0.8)
            col[e - ld:e] = rng.poisson(0.5 / 7, ld)
            while col[e - 8:e].sum() > 1:
                col[e - 8 + int(np.argmax(col[e - 8:e]))] -= 1
            short = 21 - int(col[e - 35:e - ld].sum())
            if short > 0:
                np.add.at(col, rng.integers(e - 35, e - ld, short), 1)
        for s in churners:
            logins[self._churn[s]:, s] = 0
        self._logins = logins
        # spend, complaints, plan changes: per-day buckets
        self._spends, self._complaints, self._plans = ([[] for _ in range(days)] for _ in range(3))
        n_months = int(self._month[-1]) + 1
        for s in range(n):
            x, end, sg = p[s], int(self._churn[s]), signs[s]
            tot = rng.uniform(*x[1]) * rng.uniform(0.9, 1.1, n_months)
            if "spend_decline" in sg:
                me = int(self._month[evals[s] - 1])
                for mo in range(me - 3, n_months):
                    tot[mo] = tot[mo - 1] * rng.uniform(0.55, 0.75)
            npay = x[2]
            first_rng, step = _FIRST_PAY[npay]
            d0 = int(rng.integers(0, 20 if persona[s] == silent else first_rng))
            for mo in range(1 if persona[s] == silent else n_months):
                pay_days = self._month_start[mo] + d0 + step * np.arange(npay)
                pay_days += rng.integers(0, 2, npay) if npay > 1 else 0
                w = rng.uniform(0.9, 1.1, npay)
                for dd, amt in zip(pay_days.tolist(), (tot[mo] * w / w.sum()).tolist()):
                    if dd < end:
                        kind = x[6][0] if rng.random() < 0.8 else x[6][-1]
                        self._spends[dd].append((s, round(amt, 2), kind))
            for dd in rng.integers(0, max(end, 1), rng.poisson(0.2 * end / 30)).tolist():
                if dd < end:
                    self._complaints[dd].append((s, str(rng.choice(CATEGORIES, p=_CAT_P))))
            if "complaints" in sg:
                e = int(evals[s])
                for dd in rng.choice(np.arange(e - 25, e), rng.choice((2, 3), p=(0.7, 0.3)),
                                     replace=False).tolist():
                    cat = dominant[s] if rng.random() < 0.8 else rng.choice(CATEGORIES)
                    self._complaints[dd].append((s, str(cat)))
            if "network_complaint" in drivers[s] and end > 0:
                self._complaints[int(rng.integers(max(end - 30, 0), end))].append((s, "network"))
            if end < days and "spend_decline" in sg and rng.random() < 0.5:
                dd = int(rng.integers(self._month_start[self._month[end - 1] - 2], end))
                self._plans[dd].append((s, "basic", round(x[5] * 0.6, 2)))
            elif 1 < end < days and "downgrade" in drivers[s]:
                self._plans[int(rng.integers(max(end - 60, 1), end))].append((s, "basic", round(x[5] * 0.6, 2)))
            elif rng.random() < 0.03 and end > 1:
                f = round(x[5] * float(rng.choice((0.7, 1.3))), 2)
                self._plans[int(rng.integers(1, end))].append((s, x[4] + ("-plus" if f > x[5] else "-lite"), f))
        churner_set = set(churners.tolist())  # reason: dominant complaint, else price, else random
        self._reason = {s: (str(dominant[s]) if "complaints" in signs[s] else "price"
                            if "spend_decline" in signs[s] or "downgrade" in drivers[s] else "network"
                            if "network_complaint" in drivers[s] else "price" if drivers[s]
                            else str(rng.choice(("price", "network", "service"))))
                        for s in churner_set}
        self._profiles = []
        self._renewals: list[list[int]] = [[] for _ in range(days)]
        for s in range(n):
            x = p[s]
            ten = int(rng.exponential(x[8] * (0.4 if s in churner_set else 1.0))) + 1
            left = int(rng.integers(0, 3 if s in churner_set else 24))
            renews = s not in churner_set and rng.random() >= ROLLING_SHARE
            self._profiles.append({"plan": x[4], "tenure_months": ten, "attrs": {
                "monthly_fee": x[5], "age": int(rng.integers(18, 80)), "devices": int(rng.integers(1, 5)),
                "contract_months_left": left,
                "data_allowance_gb": float(rng.choice((5, 10, 20, 50, 100)))}})
            bill_day = int(rng.integers(0, 28))
            if renews:  # when the term ends, for RENEWAL_MONTHS each time
                for mo in range(left, n_months, RENEWAL_MONTHS):
                    if self._month_start[mo] + bill_day < days:
                        self._renewals[self._month_start[mo] + bill_day].append(s)
        self._usage_mean = np.array([x[7] for x in p], float) * rng.uniform(0.5, 1.5, (n, 1))
        alive_days = int(np.minimum(self._churn, days).sum())
        self._n_base = (n + alive_days + int(logins.sum(dtype=np.int64)) + n_ch
                        + sum(len(b) for b in (*self._spends, *self._complaints, *self._plans,
                                               *self._renewals, *self._renewals[:-1])))
        self._truth_parts = (
            frozenset(canon[s] for s in churner_set), {canon[s]: int(self._churn[s]) for s in churners},
            {canon[s]: signs[s] for s in range(n)}, {canon[s]: names[persona[s]] for s in range(n)},
            {canon[s]: drivers[s] for s in range(n)})

    def _feasible(self, want: set[str], e: int) -> frozenset[str]:
        """Drop signs that the period is too short to show before evaluation day `e`."""
        ok = {"login_drop"} if e >= 36 else set()
        ok |= {"complaints"} if e >= 26 else set()
        ok |= {"spend_decline"} if e >= 1 and self._month[e - 1] >= 4 else set()
        return frozenset(want & ok)

    def _faults(self, rng: np.random.Generator) -> Truth:
        c, nb = self.cfg, self._n_base
        n_dup, n_ooo = round(c.duplicate_rate * nb), round(c.out_of_order_rate * nb)
        n_dup, n_ooo = min(n_dup, nb - 1), min(n_ooo, max(nb - 1 - n_dup, 0))
        picks = rng.choice(nb - 1, n_dup + n_ooo, replace=False).tolist() if n_dup + n_ooo else []
        self._dup, self._ooo = set(picks[:n_dup]), set(picks[n_dup:])  # never the last event
        n_inv = round(c.invalid_rate * nb)
        self._inv = set(rng.choice(nb, n_inv, replace=False).tolist()) if n_inv else set()
        return Truth(*self._truth_parts, duplicates=n_dup, invalid=n_inv, out_of_order=n_ooo,
                     total_events=nb + n_dup + n_inv)

    # ---------------------------------------------------------------- emission
    def _day(self, d: int, rng: np.random.Generator, base: int) -> Iterator[tuple[int, dict]]:
        n = self.cfg.subscribers
        alive = np.nonzero(self._churn > d)[0]
        sp, cp, pl = self._spends[d], self._complaints[d], self._plans[d]
        parts = [(np.arange(n) if d == 0 else np.array(self._renewals[d - 1], int), 0), (alive, 1),
                 (np.repeat(np.arange(n), self._logins[d]), 2),
                 (np.array([x[0] for x in sp], int), 3), (np.array([x[0] for x in cp], int), 4),
                 (np.array([x[0] for x in pl], int), 5), (np.nonzero(self._churn == d)[0], 6),
                 (np.array(self._renewals[d], int), 7)]
        sub = np.concatenate([a for a, _ in parts]).astype(np.int64)
        kind = np.concatenate([np.full(len(a), k) for a, k in parts])
        aux = np.concatenate([np.arange(len(a)) for a, _ in parts])
        off = rng.integers(EDGE_MS, DAY_MS - EDGE_MS, len(sub))
        off[kind == 0] = sub[kind == 0] % EDGE_MS
        off[kind == 7] = DAY_MS - EDGE_MS + sub[kind == 7] % EDGE_MS
        order = np.argsort(off, kind="stable")
        m = len(sub)
        fmt = np.where(rng.random(m) < 0.03, rng.integers(1, 5, m), 0)[order].tolist()
        rfc = (rng.random(m) < 0.005)[order].tolist()
        web = (rng.random(m) < 0.15)[order].tolist()
        left = self._churn[alive]
        fade = np.where((left < self.cfg.days) & (left - d <= 21), 0.6, 1.0)
        first, end, factor = self._dip[:, alive]
        fade = np.minimum(fade, np.where((first <= d) & (d < end), factor, 1.0))
        mu = self._usage_mean[alive] * fade[:, None]
        data = np.round(mu[:, 0] * rng.lognormal(0, 0.5, len(alive)), 1).tolist()
        voice = np.round(mu[:, 1] * rng.lognormal(0, 0.6, len(alive)), 1).tolist()
        sms = rng.poisson(mu[:, 2]).tolist()
        ts0, ids, reason, prof = self._start_ms + d * DAY_MS, self._ids, self._reason, self._profiles
        for j, s, k, a, o, f, r, w in zip(range(base, base + m), sub[order].tolist(), kind[order].tolist(),
                                          aux[order].tolist(), off[order].tolist(), fmt, rfc, web):
            ts = ts0 + o
            eid, sid, t = f"e{j:010d}", ids[s][f], _rfc3339(ts) if r else ts
            ev = {"event_id": eid, "subscriber_id": sid, "type": _TYPES[k], "ts": t}
            if k == 1:
                ev.update(data_mb=data[a], voice_min=voice[a], sms=sms[a])
            elif k == 2:
                ev["channel"] = "web" if w else "app"
            elif k == 3:
                ev.update(amount=sp[a][1], kind=sp[a][2])
            elif k == 4:
                ev["category"] = cp[a][1]
            elif k == 5:
                ev.update(plan=pl[a][1], monthly_fee=pl[a][2])
            elif k == 0:  # from day 1: the day after a renewal, the profile of the new term
                ev.update(plan=prof[s]["plan"], tenure_months=prof[s]["tenure_months"] + int(self._month[d]),
                          attrs={**prof[s]["attrs"], **({"contract_months_left": RENEWAL_MONTHS} if d else {})})
            elif k == 6:
                ev["reason"] = reason[s]
            yield ts, ev

    @staticmethod
    def _invalid(ev: dict, rng: np.random.Generator, eid: str) -> dict:
        k, bad = int(rng.integers(5)), {**ev, "event_id": eid}
        bad.pop("attrs", None)
        if k == 0:
            del bad["subscriber_id"]
        elif k == 1:
            bad.update(type="spend", amount=-round(float(rng.uniform(1, 200)), 2), kind="recharge")
        elif k == 2:
            bad["type"] = str(rng.choice(("teleport", "spend_v2", "LOGIN?", "")))
        elif k == 3:
            bad["ts"] = str(rng.choice(("yesterday", "2026-02-30T25:61:00Z", "not-a-time", "12:00")))
        else:
            bad.update(type="spend", amount=str(rng.choice(("12,50", "ten", "n/a"))), kind="bill")
        return bad

    def events(self) -> Iterator[dict]:
        """Yield the feed; faults (if configured) are interleaved as the rates ask."""
        rng = np.random.default_rng(self._emit_ss)
        heap: list[tuple[int, int, dict]] = []
        i, extra, seq = 0, self._n_base, 0
        for d in range(self.cfg.days):
            for ts, ev in self._day(d, rng, i):  # rng use: day draws first, then per-event draws
                late = i in self._ooo
                if late:  # released only after a later event went out: truly out of order
                    heapq.heappush(heap, (ts + int(rng.integers(EDGE_MS, LATE_MS)), seq, ev))
                    seq += 1
                else:
                    yield ev
                    if i in self._dup:
                        copy = {**ev, "attrs": dict(ev["attrs"])} if "attrs" in ev else dict(ev)
                        heapq.heappush(heap, (ts + int(rng.integers(0, DAY_MS)), seq, copy))
                        seq += 1
                if i in self._inv:
                    yield self._invalid(ev, rng, f"e{extra:010d}")
                    extra += 1
                while heap and not late and heap[0][0] <= ts:
                    yield heapq.heappop(heap)[2]
                i += 1
        while heap:
            yield heapq.heappop(heap)[2]


def generate(cfg: SimConfig = SimConfig()) -> tuple[Iterator[dict], Truth]:
    """Shortcut: `(events iterator, truth)` for `cfg`."""
    sim = Simulation(cfg)
    return sim.events(), sim.truth


def write_ndjson(events: Iterable[dict], path) -> int:
    """Write events as NDJSON (orjson) to `path`; return the number written."""
    import orjson

    n, buf = 0, []
    with open(path, "wb") as fh:
        for ev in events:
            buf.append(orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
            if len(buf) >= 4096:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    return n
