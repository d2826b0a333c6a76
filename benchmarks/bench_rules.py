"""Rule-engine throughput: the generated numba kernel against the pure-Python reference.

    python -m benchmarks.bench_rules [--rows 100000] [--quick]

Loads the shipped ruleset (``rules/default.toml``, or ``--rules FILE``), builds a realistic
feature matrix (plausible ranges for every feature of ``features.schema``, some NaN for
"never happened", a few percent of rows showing each churn warning sign), and measures

* compile + warm-up of the kernel (``compile_ruleset``: code generation, numba compilation
  and one warm-up call; one-time per ruleset version, measured once in a fresh process);
* the kernel through ``CompiledRuleset.evaluate`` (output allocation included) on all rows,
  on pipeline-sized slices (``--batch`` rows per call) and the bare kernel on preallocated
  outputs; rows/s and rule-evaluations/s, where one row costs
  ``indicators + rules + segments`` rule-evaluations;
* ``evaluate_reference`` (plain Python, row by row) on ``--reference-rows`` rows, scaled
  to rows/s, and the kernel/reference ratio; the two must agree on those rows.

Targets: >= 50 million rule-evaluations/s and >= 20x the reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from benchmarks import report
from features.schema import FEATURES, INDEX
from rules.engine import _empty, compile_ruleset, evaluate_reference
from rules.ruleset import load_ruleset

TARGET_RULE_EVALS_PER_S = 50_000_000
TARGET_SPEEDUP = 20.0


@dataclass
class Config:
    rows: int = 100_000
    reference_rows: int = 2000
    batch: int = 2000
    repeats: int = 7
    seed: int = 7
    rules: str | None = None
    quick: bool = False
    out_dir: str | None = None


def feature_matrix(rows: int, seed: int = 7) -> np.ndarray:
    """A (rows × FEATURES) float64 matrix of plausible feature values (units as in
    ``features.schema``: currency, counts, days, MB, minutes, months), NaN where a subscriber
    never did the thing. Roughly 5 % show a spend decline, 5 % a login drop, 4 % repeated
    complaints, 3 % a recent downgrade and 3 % going quiet."""
    rng = np.random.default_rng(seed)
    n = rows
    X = np.zeros((n, len(FEATURES)))

    def col(name: str, values: np.ndarray) -> None:
        X[:, INDEX[name]] = values

    def nan_where(name: str, p: float) -> None:
        X[rng.random(n) < p, INDEX[name]] = np.nan

    # personas as in churnwatch.dev.simulate: share, monthly spend range, payments a month
    personas = ((0.10, 800, 1500, 5), (0.25, 240, 380, 3), (0.25, 125, 190, 2),
                (0.38, 15, 85, 1), (0.02, 10, 30, 0))
    persona = rng.choice(len(personas), n, p=[x[0] for x in personas])
    lo = np.array([x[1] for x in personas])[persona]
    hi = np.array([x[2] for x in personas])[persona]
    pays = np.array([x[3] for x in personas])[persona]
    silent = pays == 0
    # monthly spend: a base level with noise; m0 is month-to-date (part of a month)
    base = rng.uniform(lo, hi)
    months = base[:, None] * rng.uniform(0.85, 1.15, (n, 5))
    decline = rng.random(n) < 0.05
    months[decline, 2] = months[decline, 3] * rng.uniform(0.55, 0.78, decline.sum())
    months[decline, 1] = months[decline, 2] * rng.uniform(0.55, 0.78, decline.sum())
    months[decline, 0] = months[decline, 1] * rng.uniform(0.55, 0.78, decline.sum())
    for k in range(1, 6):
        col(f"spend_m{k}", np.round(months[:, k - 1], 2))
    col("spend_m0", np.round(base * rng.uniform(0, 1, n), 2))
    new = rng.random(n) < 0.04  # subscribers too new for older months
    for k in (4, 5):
        X[new, INDEX[f"spend_m{k}"]] = 0.0

    # app logins: ~1 a day; a few dropped to <= 1 in the last week
    logins28 = rng.poisson(rng.uniform(14, 40, n))
    logins7 = rng.poisson(logins28 / 4)
    drop = rng.random(n) < 0.05
    logins7[drop] = rng.integers(0, 2, drop.sum())
    logins28[drop] = np.maximum(logins28[drop], 20)
    col("logins_7d", logins7)
    col("logins_prev28", logins28)

    # complaints in 30 days by category
    cats = rng.poisson([0.05, 0.04, 0.03, 0.01], (n, 4))
    unhappy = rng.random(n) < 0.04
    cats[unhappy, rng.integers(0, 3, unhappy.sum())] += rng.integers(2, 4, unhappy.sum())
    for k, name in enumerate(("network", "billing", "service", "other")):
        col(f"complaints_{name}_30d", cats[:, k])
    col("complaints_30d", cats.sum(axis=1))

    spends = np.where(rng.random(n) < 0.9, pays, rng.poisson(np.maximum(pays, 0.1)))
    col("spend_count_30d", spends)
    col("spend_amount_30d", np.round(np.where(spends > 0, base * rng.uniform(0.8, 1.2, n), 0), 2))
    recency = np.where(spends > 0, rng.integers(0, 30, n), rng.integers(30, 150, n)).astype(float)
    recency[silent] = rng.integers(90, 200, silent.sum())
    for k in range(6):
        X[silent, INDEX[f"spend_m{k}"]] = 0.0
    quiet = rng.random(n) < 0.03
    recency[quiet] = rng.integers(60, 200, quiet.sum())
    col("recency_days", recency)
    nan_where("recency_days", 0.02)

    col("data_mb_7d", np.round(rng.lognormal(np.log(1500), 1.0, n), 3))
    col("data_mb_prev28", np.round(rng.lognormal(np.log(6000), 1.0, n), 3))
    col("voice_min_7d", np.round(rng.lognormal(np.log(90), 0.9, n), 3))
    col("voice_min_prev28", np.round(rng.lognormal(np.log(360), 0.9, n), 3))

    fee = rng.choice([10.0, 25.0, 30.0, 60.0, 95.0], n)
    col("monthly_fee", fee)
    nan_where("monthly_fee", 0.10)
    changed = rng.random(n) < 0.15
    down = changed & (rng.random(n) < 0.5)
    delta = np.zeros(n)
    delta[changed] = np.round(fee[changed] * rng.uniform(0.1, 0.4, changed.sum()), 2)
    delta[down] *= -1
    col("fee_delta", delta)
    plan_days = np.where(changed, rng.integers(0, 200, n), np.nan).astype(float)
    recent = down & (rng.random(n) < 0.2)
    plan_days[recent] = rng.integers(0, 30, recent.sum())
    col("days_since_plan_change", plan_days)

    col("tenure_months", np.floor(rng.exponential(30, n)) + 1)
    nan_where("tenure_months", 0.05)
    since_login = rng.exponential(2.0, n).round()
    since_login[drop] = rng.integers(5, 10, drop.sum())
    since_login[quiet] = rng.integers(21, 60, quiet.sum())
    col("days_since_login", since_login)
    nan_where("days_since_login", 0.03)
    since_complaint = np.where(cats.sum(axis=1) > 0, rng.integers(0, 30, n),
                               rng.integers(30, 400, n)).astype(float)
    since_complaint[rng.random(n) < 0.6] = np.nan
    since_complaint[cats.sum(axis=1) > 0] = rng.integers(0, 30, (cats.sum(axis=1) > 0).sum())
    col("days_since_complaint", since_complaint)
    col("days_since_usage", rng.exponential(0.7, n).round())
    return X


def bench(cfg: Config) -> dict[str, Any]:
    ruleset = load_ruleset(cfg.rules)
    n_ind, n_rules, n_seg = len(ruleset.indicators), len(ruleset.rules), len(ruleset.segments)
    per_row = n_ind + n_rules + n_seg
    X = feature_matrix(cfg.rows, cfg.seed)

    t0 = time.perf_counter()
    compiled = compile_ruleset(ruleset)
    compile_s = time.perf_counter() - t0

    evaluate = report.time_repeats(lambda: compiled.evaluate(X), cfg.repeats, warmup=1)
    batches = [X[i:i + cfg.batch] for i in range(0, len(X), cfg.batch)]
    batched = report.time_repeats(lambda: [compiled.evaluate(b) for b in batches],
                                  cfg.repeats, warmup=1)
    out = _empty(ruleset, len(X))
    Xc = np.ascontiguousarray(X)
    kernel = report.time_repeats(
        lambda: compiled._kernel(Xc, out.indicators, out.hits, out.severity, out.segment),
        cfg.repeats, warmup=1)

    sub = X[: min(cfg.reference_rows, len(X))]
    ref_repeats = 3 if not cfg.quick else 1
    reference = report.time_repeats(lambda: evaluate_reference(ruleset, sub), ref_repeats,
                                    warmup=0)
    ref = evaluate_reference(ruleset, sub)
    fast = compiled.evaluate(sub)
    agree = bool(np.array_equal(ref.indicators, fast.indicators)
                 and np.array_equal(ref.hits, fast.hits)
                 and np.array_equal(ref.severity, fast.severity)
                 and np.array_equal(ref.segment, fast.segment))

    full = compiled.evaluate(X)
    rows = len(X)
    kernel_rows = evaluate.rate(rows)
    ref_rows_per_s = len(sub) / reference.median_s
    ratio = kernel_rows["median"] / ref_rows_per_s
    rule_evals = kernel_rows["median"] * per_row
    return {
        "benchmark": "rules",
        "started": report.utc_now(),
        "machine": report.machine_info(with_redis=False),
        "code_version": report.code_version(["rules"]),
        "config": asdict(cfg),
        "ruleset": {"version": ruleset.version, "source": ruleset.source,
                    "indicators": n_ind, "rules": n_rules, "segments": n_seg,
                    "rule_evaluations_per_row": per_row},
        "definitions": {
            "rule_evaluations": "rows × (indicators + rules + segments) of the ruleset",
            "kernel": "CompiledRuleset.evaluate on the whole matrix (allocates its outputs), "
                      "single thread, numba njit(nogil=True)",
        },
        "matrix": {
            "rows": rows, "features": X.shape[1],
            "nan_share": float(np.isnan(X).mean()),
            "indicator_rates": {ind.name: float(full.indicators[:, k].mean())
                                for k, ind in enumerate(ruleset.indicators)},
            "rule_rates": {rule.id: float(full.hits[:, r].mean())
                           for r, rule in enumerate(ruleset.rules)},
            "segment_shares": {name: float((full.segment == k).mean())
                               for k, name in enumerate(ruleset.segment_names)},
        },
        "compile_and_warmup_s": compile_s,
        "kernel": {
            "timing": evaluate,
            "rows_per_s_median": kernel_rows["median"],
            "rows_per_s_best": kernel_rows["best"],
            "rule_evaluations_per_s_median": rule_evals,
            "rule_evaluations_per_s_best": kernel_rows["best"] * per_row,
            "ns_per_row_median": 1e9 / kernel_rows["median"],
        },
        "kernel_batched": {
            "batch_rows": cfg.batch, "calls": len(batches), "timing": batched,
            "rows_per_s_median": rows / batched.median_s,
            "rule_evaluations_per_s_median": rows / batched.median_s * per_row,
        },
        "kernel_bare": {
            "timing": kernel,
            "rows_per_s_median": rows / kernel.median_s,
            "rule_evaluations_per_s_median": rows / kernel.median_s * per_row,
        },
        "reference": {
            "rows": len(sub), "timing": reference,
            "rows_per_s_median": ref_rows_per_s,
            "rule_evaluations_per_s_median": ref_rows_per_s * per_row,
            "us_per_row_median": 1e6 / ref_rows_per_s,
            "agrees_with_kernel": agree,
        },
        "ratio_kernel_over_reference": ratio,
        "targets": {
            "rule_evaluations_per_s": TARGET_RULE_EVALS_PER_S,
            "rule_evaluations_per_s_met": rule_evals >= TARGET_RULE_EVALS_PER_S,
            "speedup_over_reference": TARGET_SPEEDUP,
            "speedup_over_reference_met": ratio >= TARGET_SPEEDUP,
        },
        "finished": report.utc_now(),
    }


def print_summary(result: dict[str, Any]) -> None:
    k, kb, bare, ref = (result["kernel"], result["kernel_batched"], result["kernel_bare"],
                        result["reference"])
    per_row = result["ruleset"]["rule_evaluations_per_row"]
    report.print_table(
        f"rule engine, ruleset {result['ruleset']['version']} "
        f"({result['ruleset']['indicators']} indicators + {result['ruleset']['rules']} rules + "
        f"{result['ruleset']['segments']} segments = {per_row} rule-evaluations/row)",
        ["path", "rows", "rows/s (median)", "rule-evals/s (median)", "per row"],
        [
            ["numba evaluate(), whole matrix", f"{result['matrix']['rows']:,}",
             f"{k['rows_per_s_median']:,.0f}", f"{k['rule_evaluations_per_s_median']:,.0f}",
             f"{k['ns_per_row_median']:.1f} ns"],
            [f"numba evaluate(), {kb['batch_rows']}-row calls", f"{result['matrix']['rows']:,}",
             f"{kb['rows_per_s_median']:,.0f}", f"{kb['rule_evaluations_per_s_median']:,.0f}",
             f"{1e9 / kb['rows_per_s_median']:.1f} ns"],
            ["numba kernel, preallocated outputs", f"{result['matrix']['rows']:,}",
             f"{bare['rows_per_s_median']:,.0f}", f"{bare['rule_evaluations_per_s_median']:,.0f}",
             f"{1e9 / bare['rows_per_s_median']:.1f} ns"],
            ["evaluate_reference (pure Python)", f"{ref['rows']:,}",
             f"{ref['rows_per_s_median']:,.0f}", f"{ref['rule_evaluations_per_s_median']:,.0f}",
             f"{ref['us_per_row_median']:.1f} µs"],
        ],
        caption=(f"compile + warm-up (one-time): {result['compile_and_warmup_s']:.2f} s. "
                 f"kernel/reference: {result['ratio_kernel_over_reference']:,.0f}× "
                 f"(target ≥ {TARGET_SPEEDUP:.0f}×: "
                 f"{'met' if result['targets']['speedup_over_reference_met'] else 'NOT met'}); "
                 f"rule-evaluations/s target ≥ {TARGET_RULE_EVALS_PER_S / 1e6:.0f}M: "
                 f"{'met' if result['targets']['rule_evaluations_per_s_met'] else 'NOT met'}. "
                 f"reference agrees with kernel on its rows: {ref['agrees_with_kernel']}."),
    )
    rates = ", ".join(f"{name} {100 * v:.1f}%" for name, v in result["matrix"]["rule_rates"].items())
    report.note(f"  rule hit rates on the matrix: {rates}; NaN share "
                f"{100 * result['matrix']['nan_share']:.1f}%")


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_rules", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="feature-matrix rows (default 100000)")
    p.add_argument("--reference-rows", type=int, default=None,
                   help="rows for the pure-Python reference (default 2000)")
    p.add_argument("--batch", type=int, default=2000, help="rows per call for the batched pass")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7)")
    p.add_argument("--rules", default=None, help="rules TOML (default: the shipped ruleset)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out-dir", default=None, help="report directory (default reports/)")
    p.add_argument("--quick", action="store_true", help="20k rows, 500 reference rows")
    a = p.parse_args(argv)
    cfg = Config(batch=a.batch, seed=a.seed, rules=a.rules, quick=a.quick, out_dir=a.out_dir)
    if a.quick:
        cfg.rows, cfg.reference_rows, cfg.repeats = 20_000, 500, 3
    if a.rows is not None:
        cfg.rows = a.rows
    if a.reference_rows is not None:
        cfg.reference_rows = a.reference_rows
    if a.repeats is not None:
        cfg.repeats = a.repeats
    if cfg.rows < 1 or cfg.reference_rows < 1 or cfg.batch < 1 or cfg.repeats < 1:
        p.error("sizes must be positive")
    return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_args(argv)
    result = bench(cfg)
    path = report.write_report("rules", result, cfg.out_dir)
    result["report_path"] = str(path)
    print_summary(result)
    report.note(f"report: {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
