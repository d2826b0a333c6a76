"""Markdown and PNG summaries of benchmark reports, written next to the JSON report.

    python -m benchmarks.summary reports/curves-*.json reports/e2e-*.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

_CURVE_AXES = {"subscribers": "subscribers", "per_message": "per_message",
               "partitions": "partitions"}


def curve_rows(result: dict[str, Any]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Points of a curves report grouped by curve, ordered by the varied setting."""
    rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for r in result["points"]:
        curve = r["point"]["curve"]
        rows.setdefault(curve, []).append((r["point"][_CURVE_AXES[curve]], r))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in rows.items()}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write_curves(result: dict[str, Any], report_path: Path) -> tuple[Path, list[Path]]:
    """``<report>.md`` with one table per curve and ``<report>-<curve>.png`` plots."""
    plt = _pyplot()
    stem = report_path.with_suffix("")
    lines = [f"# Scaling curves ({result['created']})", "",
             f"Machine: {result['machine'].get('cpu_count', '?')} CPUs; code "
             f"{result['code_version'].get('head', '?')}. One worker process; each point on "
             "fresh servers. Rates to every offset committed (includes Faust's commit "
             "interval) and to every event counted processed.", ""]
    pngs = []
    for curve, rows in curve_rows(result).items():
        lines += [f"## events/s by {curve}", "",
                  f"| {curve} | events | events/s committed | events/s processed | events/batch |",
                  "|---:|---:|---:|---:|---:|"]
        for x, r in rows:
            lines.append(f"| {x:,} | {r['events']:,} | {r['events_per_s']:,} | "
                         f"{r['events_per_s_processed'] or 0:,} | {r['mean_events_per_batch']} |")
        lines.append("")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [x for x, _ in rows]
        ax.plot(xs, [r["events_per_s"] for _, r in rows], marker="o", label="to committed")
        ax.plot(xs, [r["events_per_s_processed"] or 0 for _, r in rows], marker="s",
                label="to processed")
        if curve in ("subscribers", "per_message"):
            ax.set_xscale("log")
        ax.set_xlabel(curve)
        ax.set_ylabel("events/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title(f"churnwatch end to end: events/s by {curve}")
        fig.tight_layout()
        png = Path(f"{stem}-{curve}.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        pngs.append(png)
        lines += [f"![events/s by {curve}]({png.name})", ""]
    if result.get("failed_points"):
        lines += ["## Points that failed", ""]
        lines += [f"- {f['point']}: {f['error'].splitlines()[0][:200]}"
                  for f in result["failed_points"]]
    md = Path(f"{stem}.md")
    md.write_text("\n".join(lines))
    return md, pngs


def write_e2e(result: dict[str, Any], report_path: Path) -> tuple[Path, list[Path]]:
    """``<report>.md`` and ``<report>-throughput.png`` for an end-to-end report."""
    plt = _pyplot()
    stem = report_path.with_suffix("")
    cw, nv, lat = result["churnwatch"], result["naive"], result["latency"]
    a = lat["alert_latency_ms"]
    lines = [f"# End-to-end benchmark ({result['created']})", "",
             "| design | events/s committed | events/s processed |", "|---|---:|---:|",
             f"| churnwatch | {cw['events_per_s']:,} | {cw['events_per_s_processed'] or 0:,} |",
             f"| naive Faust | {nv['events_per_s'] or 0:,} | {nv['events_per_s_processed'] or 0:,} |",
             "", f"Ratio: {result['ratio']}x (committed), {result['ratio_processed']}x "
             "(processed).", "",
             f"Event-to-alert latency at {lat['offered_events_per_s']:,} events/s offered: "
             f"p50 {a['p50']} ms, p95 {a['p95']} ms, p99 {a['p99']} ms, max {a['max']} ms "
             f"({lat['alerts_with_ingested_at']} alerts).", ""]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["churnwatch", "naive Faust"], [cw["events_per_s"], nv["events_per_s"] or 0])
    ax.set_ylabel("events/s (to committed)")
    ax.set_title(f"same feed, same run: {result['ratio']}x")
    fig.tight_layout()
    png = Path(f"{stem}-throughput.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    lines += [f"![throughput]({png.name})", ""]
    md = Path(f"{stem}.md")
    md.write_text("\n".join(lines))
    return md, [png]


def main(argv: Sequence[str]) -> None:
    for name in argv:
        path = Path(name)
        result = orjson.loads(path.read_bytes())
        writer = {"curves": write_curves, "e2e": write_e2e}.get(result.get("benchmark"))
        if writer is None:
            raise SystemExit(f"{path}: not a curves or e2e report (benchmark="
                             f"{result.get('benchmark')!r})")
        md, pngs = writer(result, path)
        print(md, *pngs)


if __name__ == "__main__":
    main(sys.argv[1:])
