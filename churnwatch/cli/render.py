"""Terminal rendering of alerts and subscriber reports (rich).

Every value that comes from data (subscriber ids, segments, rule and action names, reasons)
is escaped before it meets rich's markup, so an id like ``[/bold]`` or ``[link=…]`` prints as
text instead of failing or rendering."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


def alert_line(alert: dict[str, Any]) -> str:
    """One-line live view of an alert."""
    sev = alert["severity"]
    why = escape(", ".join(r["indicator"] for r in alert["reasons"]
                           if r.get("kind") == "indicator"))
    # the model's reasons: the inputs raising the score most (none from an untrained model)
    model = escape(", ".join(r["feature"] for r in alert["reasons"]
                             if r.get("kind") == "model" and r.get("contribution", 0) > 0))
    if model:
        why = f"{why}  model: {model}" if why else f"model: {model}"
    acts = escape(", ".join(f"{a['id']}→{a['team']}" for a in alert["actions"]))
    return (f"[{SEVERITY_STYLE.get(sev, '')}]{escape(sev):<6}[/] "
            f"{escape(alert['subscriber_id']):<16} {escape(alert['segment']):<17} "
            f"score {alert['score']:.2f}  {why}  [dim]{acts}[/]")


def render_inspect(console: Console, report: dict[str, Any]) -> None:
    """Human view of `churnwatch inspect`."""
    if not report.get("known"):
        console.print(f"{escape(report['subscriber_id'])}: no events seen")
        return
    console.print(f"[bold]{escape(report['subscriber_id'])}[/]  segment "
                  f"[bold]{escape(report['segment'])}[/]  score {round(report['score'], 3)}"
                  f"  severity {report['severity'] or '-'}"
                  f"  rules {escape(', '.join(report['rules'])) or '-'}")
    ind = Table("indicator", "holds", title="indicators")
    for name, value in report["indicators"].items():
        ind.add_row(escape(name), "[red]yes[/]" if value else "no")
    console.print(ind)
    feats = Table("feature", "value", title="features")
    missing = set(report.get("missing_features", ()))
    for name, value in report["features"].items():
        feats.add_row(escape(name), "-" if name in missing else f"{value:g}")
    console.print(feats)
    for alert in report["alerts"]:
        console.print(alert_line(alert))
