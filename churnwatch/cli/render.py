"""Terminal rendering of alerts and subscriber reports (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


def alert_line(alert: dict[str, Any]) -> str:
    """One-line live view of an alert."""
    sev = alert["severity"]
    why = ", ".join(r["indicator"] for r in alert["reasons"] if r.get("kind") == "indicator")
    acts = ", ".join(f"{a['id']}→{a['team']}" for a in alert["actions"])
    return (f"[{SEVERITY_STYLE.get(sev, '')}]{sev:<6}[/] {alert['subscriber_id']:<16} "
            f"{alert['segment']:<17} score {alert['score']:.2f}  {why}  [dim]{acts}[/]")


def render_inspect(console: Console, report: dict[str, Any]) -> None:
    """Human view of `churnwatch inspect`."""
    if not report.get("known"):
        console.print(f"{report['subscriber_id']}: no events seen")
        return
    console.print(f"[bold]{report['subscriber_id']}[/]  segment [bold]{report['segment']}[/]  "
                  f"score {round(report['score'], 3)}"
                  f"  severity {report['severity'] or '-'}  rules {', '.join(report['rules']) or '-'}")
    ind = Table("indicator", "holds", title="indicators")
    for name, value in report["indicators"].items():
        ind.add_row(name, "[red]yes[/]" if value else "no")
    console.print(ind)
    feats = Table("feature", "value", title="features")
    missing = set(report.get("missing_features", ()))
    for name, value in report["features"].items():
        feats.add_row(name, "-" if name in missing else f"{value:g}")
    console.print(feats)
    for alert in report["alerts"]:
        console.print(alert_line(alert))
