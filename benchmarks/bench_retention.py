"""Does allocation by measured incremental effect retain more per contact than the fixed playbook?

The simulator's retention world (``churnwatch.dev.treatment``: true effects per action ×
segment × reason, one backfiring) sends the same alerts, day by day, to three policies, all
with the same 5 % holdout (``alerting.holdout``) and the same subscribers' draws:

- ``thompson``: the engine (``alerting.allocate``: exploration to ``min_outcomes``, then
  Thompson sampling, no sleeping dogs) on the ledger as it stands each day
  (``alerting.effect``; an alert is counted once its window and grace closed);
- ``fixed``: the first alternative in playbook order for every alert: the fixed default
  playbook at exactly the same contact budget (one contact per treated alert);
- ``all``: every alternative to every alert (the default playbook before groups: 2-3
  contacts an alert; effects assumed additive), reported per 1,000 contacts.

Incremental retained subscribers per 1,000 contacts, two ways: *true* (the simulator knows
each contact's effect) and *measured* (the treated − holdout retained rate over the run,
with Newcombe's 95 % interval, × alerts treated / contacts). Seeds are given on the command
line; the defaults (1001-1010) were not used to choose any setting or effect size.

    python -m benchmarks.bench_retention [--seeds 1001-1010] [--days 360] [--per-day 120]
        [--figures docs/]
"""

from __future__ import annotations

import argparse
import heapq
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alerting.alert import Action
from alerting.allocate import Allocator, EffectSnapshot
from alerting.effect import alert_cells, by_action_segment, newcombe
from alerting.effect_config import EffectConfig
from alerting.holdout import Holdout
from benchmarks.report import code_version, machine_info, utc_now, write_report
from churnwatch.dev.treatment import (
    ALTERNATIVES,
    TreatmentWorld,
    cell_effect,
    true_effect,
)

POLICIES = ("thompson", "fixed", "all")
GROUPS = {a: "save" for alts in ALTERNATIVES.values() for a in alts}


def run(seed: int, policy: str, days: int, per_day: int, window: int = 30,
        min_outcomes: int = 100) -> dict[str, Any]:
    """One policy over one seed's alerts."""
    world, holdout = TreatmentWorld(seed), Holdout(0.05)
    config = EffectConfig(window_days=window, strategy="fixed" if policy == "fixed" else
                          "thompson", min_outcomes=min_outcomes)
    counts: dict[str, int] = {}
    settling: list[tuple[int, int, list[str], bool]] = []  # (day, seq, cells, retained)
    contacts = treated = treated_kept = control = control_kept = 0
    gain = 0.0
    daily: list[float] = []  # cumulative true incremental retained per 1,000 contacts
    shares: list[dict[str, float]] = []  # of the treated alerts of the day, per action
    suppressed_on: int | None = None
    seq = 0
    for day, alerts in enumerate(world.alerts(days, per_day)):
        snapshot = EffectSnapshot.of(by_action_segment(counts), config.min_control)
        if suppressed_on is None and snapshot.backfiring("sales_follow_up", "regular"):
            suppressed_on = day
        allocator = Allocator(config, GROUPS, snapshot)
        chosen_today: dict[str, int] = {}
        for a in alerts:
            held = holdout.holds(a.subscriber_id)
            if held or policy != "all":
                picked = [] if held else [x.id for x in allocator.allocate(
                    a.alert_id, a.segment, [Action(x, "t", 24.0) for x in a.alternatives]).actions]
            else:
                picked = list(a.alternatives)
            retained = world.retained(a.alert_id, a.segment, a.reason, picked)
            alert = {"segment": a.segment, "holdout": held, "rules": [],
                     "reasons": [{"kind": "indicator", "indicator": a.reason}],
                     "actions": [{"id": x} for x in picked],
                     "suppressed": [{"id": x, "reason": "holdout"} for x in a.alternatives]
                     if held else []}
            cells = [c for c in alert_cells(alert)[1] if c.startswith("s|")]
            for cell in cells:
                counts[f"{cell}|c"] = counts.get(f"{cell}|c", 0) + 1
            settle = day + window + 2  # counted once the window and grace have passed
            heapq.heappush(settling, (settle, seq, cells, retained))
            seq += 1
            if held:
                control += 1
                control_kept += retained
            elif picked:
                treated += 1
                treated_kept += retained
                contacts += len(picked)
                gain += sum(true_effect(x, a.segment, a.reason) for x in picked)
                for x in picked:
                    chosen_today[x] = chosen_today.get(x, 0) + 1
        # settle into the counts the allocator reads tomorrow
        due = [item for item in settling if item[0] <= day + 1]
        for _, _, cells, kept in due:
            for cell in cells:
                counts[f"{cell}|n"] = counts.get(f"{cell}|n", 0) + 1
                counts[f"{cell}|k"] = counts.get(f"{cell}|k", 0) + int(kept)
        settling = [item for item in settling if item[0] > day + 1]
        heapq.heapify(settling)
        daily.append(1000 * gain / contacts if contacts else 0.0)
        total = sum(chosen_today.values())
        shares.append({k: v / total for k, v in chosen_today.items()} if total else {})
    diff = newcombe(treated_kept, treated, control_kept, control)
    assert diff is not None
    scale = 1000 * treated / contacts
    final = by_action_segment(counts)
    return {"seed": seed, "policy": policy, "alerts_treated": treated, "contacts": contacts,
            "control": control, "true_per_1000": 1000 * gain / contacts,
            "measured_per_1000": diff[0] * scale,
            "measured_interval": [diff[1] * scale, diff[2] * scale],
            "backfire_suppressed_on_day": suppressed_on,
            "daily_true_per_1000": daily, "daily_shares": shares,
            "cells": [{"action": r.action, "segment": r.segment, "difference": r.difference,
                       "low": r.low, "high": r.high, "truth": cell_effect(r.action, r.segment),
                       "treated": r.treated, "control": r.control} for r in final]}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by = {p: [r for r in runs if r["policy"] == p] for p in POLICIES}
    out: dict[str, Any] = {}
    for policy, rs in by.items():
        treated = sum(r["alerts_treated"] for r in rs)
        contacts = sum(r["contacts"] for r in rs)
        out[policy] = {"contacts": contacts,
                       "true_per_1000": float(np.mean([r["true_per_1000"] for r in rs])),
                       "measured_per_1000_by_seed": [r["measured_per_1000"] for r in rs],
                       "measured_interval_by_seed": [r["measured_interval"] for r in rs],
                       "alerts_treated": treated}
    ratios = [t["true_per_1000"] / f["true_per_1000"] for t, f in zip(by["thompson"], by["fixed"])]
    measured = [t["measured_per_1000"] / f["measured_per_1000"]
                for t, f in zip(by["thompson"], by["fixed"])]
    boot = np.random.default_rng(0).choice(ratios, (10_000, len(ratios))).mean(axis=1)
    out["ratio_true_thompson_vs_fixed"] = {"mean": float(np.mean(ratios)),
                                           "min": float(min(ratios)), "max": float(max(ratios)),
                                           "bootstrap_95": [float(np.quantile(boot, 0.025)),
                                                            float(np.quantile(boot, 0.975))]}
    out["ratio_measured_thompson_vs_fixed_median"] = float(np.median(measured))
    out["backfire_suppressed_on_day"] = [r["backfire_suppressed_on_day"] for r in by["thompson"]]
    return out


def figures(runs: Sequence[dict[str, Any]], directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for policy, colour in zip(POLICIES, ("tab:green", "tab:blue", "tab:gray")):
        curves = np.array([r["daily_true_per_1000"] for r in runs if r["policy"] == policy])
        ax.plot(curves.mean(axis=0), color=colour, label=policy)
        ax.fill_between(range(curves.shape[1]), curves.min(axis=0), curves.max(axis=0),
                        color=colour, alpha=0.15)
    ax.set_xlabel("day of the run")
    ax.set_ylabel("incremental retained / 1,000 contacts")
    ax.set_title("True incremental retention per 1,000 contacts (cumulative; band: seeds)")
    ax.legend()
    fig.tight_layout()
    first = directory / "retention-per-contact.png"
    fig.savefig(first, dpi=110)
    plt.close(fig)
    run0 = next(r for r in runs if r["policy"] == "thompson")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    cells = [c for c in run0["cells"] if c["difference"] is not None]
    y = np.arange(len(cells))
    ax.errorbar([c["difference"] for c in cells], y,
                xerr=[[c["difference"] - c["low"] for c in cells],
                      [c["high"] - c["difference"] for c in cells]], fmt="o", label="ledger, 95 %")
    ax.scatter([c["truth"] for c in cells], y, marker="x", color="red", zorder=3, label="truth")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{c['action']} · {c['segment']}" for c in cells])
    ax.set_xlabel("incremental retention (treated − holdout)")
    ax.set_title(f"Ledger at the end of a run (seed {run0['seed']}, thompson)")
    fig.legend(loc="lower left", ncols=2, fontsize="small")
    fig.tight_layout()
    second = directory / "retention-ledger.png"
    fig.savefig(second, dpi=110)
    plt.close(fig)
    return [str(first), str(second)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1001-1010")
    parser.add_argument("--days", type=int, default=360)
    parser.add_argument("--per-day", type=int, default=120)
    parser.add_argument("--min-outcomes", type=int, default=100)
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--out", default=None, help="report directory (default reports/)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = [run(seed, policy, args.days, args.per_day, min_outcomes=args.min_outcomes)
            for seed in _seeds(args.seeds) for policy in POLICIES]
    summary = summarise(runs)
    report = {"benchmark": "retention", "at": utc_now(), "machine": machine_info(with_redis=False),
              "code": code_version(), "params": vars(args) | {"figures": str(args.figures)},
              "summary": summary, "seconds": time.perf_counter() - started,
              "runs": [{k: v for k, v in r.items() if not k.startswith("daily")} for r in runs]}
    if args.figures is not None:
        report["figures"] = figures(runs, args.figures)
    path = write_report("retention", report, args.out)
    for policy in POLICIES:
        s = summary[policy]
        print(f"{policy:>9}: true {s['true_per_1000']:6.1f} incremental retained / 1,000 contacts"
              f" ({s['contacts']} contacts)")
    r = summary["ratio_true_thompson_vs_fixed"]
    print(f"thompson / fixed: {r['mean']:.2f}x (seeds {r['min']:.2f}-{r['max']:.2f}, "
          f"bootstrap 95 % {r['bootstrap_95'][0]:.2f}-{r['bootstrap_95'][1]:.2f}); "
          f"backfire suppressed on day {summary['backfire_suppressed_on_day']}")
    print(f"report: {path}")


if __name__ == "__main__":
    main()
