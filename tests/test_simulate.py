"""Unit tests for the synthetic telemetry feed (churnwatch.dev.simulate)."""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnwatch.dev.simulate import (
    QUIET_SHARE,
    RENEWAL_MONTHS,
    SIGNS,
    USAGE_DIP_SHARE,
    WARMUP_DAYS,
    SimConfig,
    Simulation,
    generate,
    write_ndjson,
)

DAY = 86_400_000
TYPES = {"spend", "login", "complaint", "usage", "plan_change", "profile", "churn", "active", "outcome"}
SEGMENTS = {"high_end_business", "family", "young", "regular", "silent"}


def canon(sid: str) -> str:
    s = re.sub(r"[\s\-]", "", sid)
    return "+" + s[2:] if s.startswith("00") else s


def ts_ms(ts) -> int | None:
    if isinstance(ts, int) and not isinstance(ts, bool):
        return ts
    try:
        return int(datetime.fromisoformat(ts).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def num(x, lo=0.0) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= lo


def is_valid(ev: dict) -> bool:
    """The contract (docs/contract.md §2), checked field by field."""
    eid, sid, typ = ev.get("event_id"), ev.get("subscriber_id"), ev.get("type")
    if not (isinstance(eid, str) and 1 <= len(eid) <= 128 and isinstance(sid, str)):
        return False
    if not re.fullmatch(r"\+\d{8,15}", canon(sid)) or typ not in TYPES or ts_ms(ev.get("ts")) is None:
        return False
    if typ == "spend":
        return num(ev.get("amount")) and ev.get("kind", "bill") in ("recharge", "bill", "purchase")
    if typ == "login":
        return ev.get("channel", "app") in ("app", "web")
    if typ == "complaint":
        return ev.get("category") in ("network", "billing", "service", "other")
    if typ == "usage":
        keys = [k for k in ("data_mb", "voice_min", "sms") if k in ev]
        return bool(keys) and all(num(ev[k]) for k in keys)
    if typ == "plan_change":
        return isinstance(ev.get("plan"), str) and num(ev.get("monthly_fee"))
    if typ == "profile":
        attrs = ev.get("attrs")
        return (isinstance(ev.get("plan"), str) and isinstance(ev.get("tenure_months"), int)
                and isinstance(attrs, dict) and all(isinstance(k, str) and num(v, -math.inf)
                                                    for k, v in attrs.items()))
    if typ == "churn":
        return isinstance(ev.get("reason", ""), str)
    return True


SMALL = SimConfig(subscribers=150, days=150, churn_rate=0.1, seed=3)
FAULTY = SimConfig(subscribers=120, days=70, seed=5, duplicate_rate=0.01, invalid_rate=0.01,
                   out_of_order_rate=0.01)


def test_deterministic_and_reiterable():
    a, b = Simulation(FAULTY), Simulation(FAULTY)
    first = list(a.events())
    assert first == list(b.events()) == list(a.events())
    assert a.truth == b.truth
    other = Simulation(SimConfig(subscribers=120, days=70, seed=6))
    assert list(other.events())[:500] != first[:500]
    events, truth = generate(FAULTY)
    assert list(events) == first and truth == a.truth


def test_contract_order_and_identity():
    sim = Simulation(SMALL)
    evs = list(sim.events())
    assert len(evs) == sim.truth.total_events
    assert all(is_valid(e) for e in evs)
    assert len({e["event_id"] for e in evs}) == len(evs)
    times = [ts_ms(e["ts"]) for e in evs]
    assert times == sorted(times)
    start = int(SMALL.start.timestamp() * 1000)
    assert start <= times[0] and times[-1] < start + SMALL.days * DAY
    assert 0 < sum(isinstance(e["ts"], str) for e in evs) < 0.02 * len(evs)
    raw = Counter(e["subscriber_id"] for e in evs)
    assert 0.01 < sum(n for s, n in raw.items() if s != canon(s)) / len(evs) < 0.06
    assert {canon(s) for s in raw} == set(sim.truth.segments)
    assert all(re.fullmatch(r"\+4479\d{8}", s) for s in sim.truth.segments)
    seen: set[str] = set()
    for e in evs:  # the profile comes first for every subscriber
        sid = canon(e["subscriber_id"])
        assert sid in seen or e["type"] == "profile"
        seen.add(sid)
    assert set(sim.truth.segments.values()) <= SEGMENTS


def test_churners_go_silent_and_renewals_label_the_others():
    sim = Simulation(SMALL)
    t = sim.truth
    assert len(t.churners) == round(SMALL.churn_rate * SMALL.subscribers) == len(t.churn_day)
    churn_ts, last_ts, actives, left = {}, defaultdict(int), defaultdict(list), {}
    renewed_profiles = defaultdict(list)
    for e in sim.events():
        sid, ts = canon(e["subscriber_id"]), ts_ms(e["ts"])
        if e["type"] == "profile" and sid in left:
            renewed_profiles[sid].append((ts, e["attrs"]["contract_months_left"]))
        elif e["type"] == "profile":
            left[sid] = e["attrs"]["contract_months_left"]
        elif e["type"] == "churn":
            assert sid not in churn_ts
            churn_ts[sid] = ts
        elif e["type"] == "active":
            actives[sid].append(ts)
        assert sid not in churn_ts or e["type"] == "churn", "event after churn"
        last_ts[sid] = max(last_ts[sid], ts)
    assert set(churn_ts) == t.churners
    start = int(SMALL.start.timestamp() * 1000)
    days = [(churn_ts[sid] - start) // DAY for sid in t.churners]
    assert all(days_ == t.churn_day[sid] >= WARMUP_DAYS for sid, days_ in zip(t.churners, days))
    assert max(days) - min(days) >= SMALL.days // 2  # spread over the run, not bunched at its end
    # `active` = a contract renewal: only non-churners, once, in the month their term ends
    assert not set(actives) & t.churners
    for sid, times in actives.items():
        month = datetime.fromtimestamp(times[0] / 1000, timezone.utc).month - SMALL.start.month
        assert len(times) == 1 and month == left[sid] and times[0] % DAY >= DAY - 60_000
    months = 5  # SMALL spans January to May
    due = {s for s in set(t.segments) - t.churners if left[s] < months}
    # the rest go month-to-month (ROLLING_SHARE) or renew after the run
    assert set(actives) <= due and 0.4 * len(due) <= len(actives) <= 0.8 * len(due)
    # the day after a renewal the BSS sends the profile of the new term; no other profile
    assert set(renewed_profiles) <= set(actives)
    for sid, times in actives.items():
        if times[0] // DAY + 1 < (start // DAY) + SMALL.days:
            (ts, months_left), = renewed_profiles[sid]
            assert ts // DAY == times[0] // DAY + 1 and months_left == RENEWAL_MONTHS


def month_back(y: int, m: int, k: int) -> tuple[int, int]:
    i = y * 12 + (m - 1) - k
    return i // 12, i % 12 + 1


def indicators(rec: dict, now: int) -> set[str]:
    """docs/contract.md §3, written plainly: calendar months in UTC, windows in days."""
    t = datetime.fromtimestamp(now / 1000, timezone.utc)
    month_spend = defaultdict(float)
    for ts, amount in rec["spend"]:
        if ts <= now:
            d = datetime.fromtimestamp(ts / 1000, timezone.utc)
            month_spend[(d.year, d.month)] += amount
    s1, s2, s3, s4 = (month_spend[month_back(t.year, t.month, k)] for k in (1, 2, 3, 4))
    out = set()
    if s4 > 0 and s1 <= 0.8 * s2 and s2 <= 0.8 * s3 and s3 <= 0.8 * s4:
        out.add("spend_decline")
    last7 = sum(now - 7 * DAY < x <= now for x in rec["login"])
    before = sum(now - 35 * DAY < x <= now - 7 * DAY for x in rec["login"])
    if last7 <= 1 and before >= 20:
        out.add("login_drop")
    if sum(now - 30 * DAY < x <= now for x in rec["complaint"]) >= 2:
        out.add("complaints")
    return out


def rfm_segment(rec: dict, now: int) -> str:
    spends = [(ts, a) for ts, a in rec["spend"] if ts <= now]
    r = (now - max(ts for ts, _ in spends)) / DAY if spends else math.inf
    f = sum(now - 30 * DAY < ts for ts, _ in spends)
    m = sum(a for ts, a in spends if now - 30 * DAY < ts)
    if r <= 30 and f >= 4 and m >= 500:
        return "high_end_business"
    if r <= 60 and f >= 3 and m >= 200:
        return "family"
    if r <= 30 and f >= 2 and m >= 100:
        return "young"
    return "silent" if r >= 90 and f == 0 else "regular"


@pytest.fixture(scope="module")
def default_run():
    """Stream the default config once, keeping only what the indicators need."""
    sim = Simulation(SimConfig())
    recs = defaultdict(lambda: {"spend": [], "login": [], "complaint": [], "usage": [], "plan": [],
                                "network": [], "last": 0, "end": None})
    n = 0
    for e in sim.events():
        n += 1
        r, ts = recs[canon(e["subscriber_id"])], ts_ms(e["ts"])
        if e["type"] == "spend":
            r["spend"].append((ts, e["amount"]))
        elif e["type"] in ("login", "complaint"):
            r[e["type"]].append(ts)
            if e.get("category") == "network":
                r["network"].append(ts)
        elif e["type"] == "usage":
            r["usage"].append((ts, e["data_mb"]))
        elif e["type"] == "plan_change":
            r["plan"].append((ts, e["plan"]))
        if e["type"] == "churn":
            r["end"] = ts
        else:
            r["last"] = ts  # last event before churn (the day before: churners go quiet that day)
    for r in recs.values():  # everyone else is evaluated at the end of the run
        r["end"] = r["end"] or r["last"]
    return sim.truth, recs, n


def test_default_size(default_run):
    truth, recs, n = default_run
    assert 200_000 <= n == truth.total_events <= 400_000 and len(recs) == 1000


def test_designed_churners_meet_two_of_three(default_run):
    truth, recs, _ = default_run
    shown = {s: indicators(recs[s], recs[s]["last"]) for s in truth.churners}
    start = int(SimConfig().start.timestamp() * 1000)
    assert all((recs[s]["last"] - start) // DAY == truth.churn_day[s] - 1 for s in truth.churners)
    assert all(truth.warning_signs[s] <= shown[s] for s in truth.churners)  # designed => visible
    hit = sum(len(v) >= 2 for v in shown.values()) / len(shown)
    one = sum(len(truth.warning_signs[s]) == 1 for s in truth.churners) / len(truth.churners)
    print(f"churners meeting 2 of 3 the day before churn: {hit:.1%}")
    assert 0.65 <= hit < 0.9 and 0.05 <= one <= 0.15
    quiet = {s for s in truth.churners if not truth.warning_signs[s]}
    assert len(quiet) == round(QUIET_SHARE * len(truth.churners))
    assert sum(len(v) >= 2 for s, v in shown.items() if s in quiet) <= 1  # rules rarely see them


def test_quiet_leavers_show_what_the_rules_do_not_watch(default_run):
    """Quiet churners: usage falls against their own level, some downgrade or complain about
    the network; stayers show the same usage dip as noise."""
    truth, recs, _ = default_run
    quiet = {s for s in truth.churners if not truth.warning_signs[s]}
    assert all("usage_decline" in truth.drivers[s] for s in quiet)
    for s in quiet:
        end, usage = recs[s]["end"], recs[s]["usage"]
        last = [x for ts, x in usage if end - 14 * DAY <= ts < end]
        before = [x for ts, x in usage if ts < end - 45 * DAY]
        if len(before) >= 14:
            assert sum(last) / len(last) < 0.7 * sum(before) / len(before)
        if "downgrade" in truth.drivers[s]:
            assert any(end - 60 * DAY <= ts < end and plan == "basic" for ts, plan in recs[s]["plan"])
        if "network_complaint" in truth.drivers[s]:
            assert any(end - 31 * DAY <= ts < end for ts in recs[s]["network"])
    assert any("downgrade" in truth.drivers[s] for s in quiet)
    assert any("network_complaint" in truth.drivers[s] for s in quiet)
    dips = {s for s in set(truth.segments) - truth.churners if truth.drivers[s]}
    stayers = sum(seg != "silent" for s, seg in truth.segments.items()) - len(truth.churners)
    assert len(dips) == round(USAGE_DIP_SHARE * stayers) > 0
    assert all(truth.drivers[s] == {"usage_decline"} for s in dips)

    def dipped(s: str) -> bool:  # some fortnight well below the subscriber's own mean
        daily = [x for _, x in sorted(recs[s]["usage"])]
        mean = sum(daily) / len(daily)
        return min(sum(daily[i:i + 14]) / 14 for i in range(len(daily) - 13)) < 0.6 * mean

    plain = sorted(set(truth.segments) - truth.churners - dips)[:300]
    assert sum(map(dipped, dips)) >= 0.7 * len(dips)  # dips late in the run may be cut short
    assert sum(map(dipped, plain)) <= 0.05 * len(plain)


def test_few_non_churners_meet_two_of_three(default_run):
    truth, recs, _ = default_run
    stay = set(truth.segments) - truth.churners
    shown = {s: indicators(recs[s], recs[s]["end"]) for s in stay}
    assert all(truth.warning_signs[s] <= shown[s] for s in stay)
    fp = sum(len(v) >= 2 for v in shown.values()) / len(stay)
    print(f"non-churners meeting 2 of 3 at the end: {fp:.1%}")
    assert 0 < fp <= 0.03
    assert sum(len(truth.warning_signs[s]) == 2 for s in stay) >= 1


def test_segments_match_rfm_at_end(default_run):
    truth, recs, _ = default_run
    plain = [s for s in set(truth.segments) - truth.churners
             if "spend_decline" not in truth.warning_signs[s] or truth.segments[s] == "silent"]
    ok = sum(rfm_segment(recs[s], recs[s]["end"]) == truth.segments[s] for s in plain)
    assert ok / len(plain) >= 0.95
    assert set(truth.segments.values()) == SEGMENTS


def check_faults(cfg: SimConfig, max_late: int = 10**15) -> None:
    sim = Simulation(cfg)
    evs, t = list(sim.events()), sim.truth
    assert len(evs) == t.total_events
    valid = [e for e in evs if is_valid(e)]
    assert len(evs) - len(valid) == t.invalid
    firsts: dict[str, dict] = {}
    dups = late = 0
    high = -1
    for e in valid:
        if e["event_id"] in firsts:
            assert e == firsts[e["event_id"]]  # exact duplicate
            dups += 1
            continue
        firsts[e["event_id"]] = e
        ts = ts_ms(e["ts"])
        if ts < high:
            late += 1
            assert high - ts <= max_late
        high = max(high, ts)
    assert (dups, late) == (t.duplicates, t.out_of_order)


def test_fault_injection_counts():
    check_faults(FAULTY, max_late=2 * DAY)  # dense feed: late by < 2 days
    sim = Simulation(FAULTY)
    assert sim.truth.duplicates > 0 and sim.truth.invalid > 0 and sim.truth.out_of_order > 0
    clean = Simulation(SimConfig(subscribers=120, days=70, seed=5)).truth
    assert (clean.duplicates, clean.invalid, clean.out_of_order) == (0, 0, 0)
    assert sim.truth.total_events == clean.total_events + sim.truth.duplicates + sim.truth.invalid


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), days=st.integers(1, 160), churn=st.floats(0, 1), seed=st.integers(0, 99),
       dup=st.sampled_from([0, 0.02, 0.3]), inv=st.sampled_from([0, 0.02, 0.3]),
       ooo=st.sampled_from([0, 0.02, 0.3]))
def test_any_config_is_consistent(n, days, churn, seed, dup, inv, ooo):
    cfg = SimConfig(subscribers=n, days=days, churn_rate=churn, seed=seed, duplicate_rate=dup,
                    invalid_rate=inv, out_of_order_rate=ooo)
    check_faults(cfg)
    t = Simulation(cfg).truth
    assert all(set(v) <= set(SIGNS) for v in t.warning_signs.values())


def test_write_ndjson_roundtrip(tmp_path):
    cfg = SimConfig(subscribers=30, days=20, seed=1, invalid_rate=0.02)
    path = tmp_path / "feed.ndjson"
    n = write_ndjson(Simulation(cfg).events(), path)
    lines = path.read_bytes().splitlines()
    assert n == len(lines) == Simulation(cfg).truth.total_events
    assert [orjson.loads(x) for x in lines] == list(Simulation(cfg).events())


@pytest.mark.parametrize("bad", [dict(subscribers=0), dict(days=0), dict(churn_rate=1.5),
                                 dict(invalid_rate=-0.1),
                                 dict(start=datetime(2026, 1, 2, tzinfo=timezone.utc))])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        Simulation(SimConfig(**bad))


@pytest.mark.parametrize("days", [1, 2, 3, 30])
def test_short_runs_with_only_churners_generate(days):
    """Quiet leavers whose churn falls on the first days still get their designed signals."""
    for seed in range(10):
        sim = Simulation(SimConfig(subscribers=40, days=days, churn_rate=1.0, seed=seed))
        assert len(list(sim.events())) == sim.truth.total_events
