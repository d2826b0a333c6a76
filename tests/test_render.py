"""Data never becomes rich markup: subscriber ids, segments and names that look like markup
print as text (no crash on ``[/bold]``, no link from ``[link=…]``)."""

from __future__ import annotations

import io

from rich.console import Console

from churnwatch.cli.render import alert_line, render_inspect

HOSTILE = ["[/bold]", "[link=https://evil.example]click[/link]", "+44 [red]7700[/red]"]


def _printed(draw) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    console = Console(file=out, record=True, width=200, force_terminal=True)
    draw(console)
    return console.export_text(), console.export_html()


def test_an_alert_line_prints_ids_as_text() -> None:
    for sid in HOSTILE:
        alert = {"severity": "high", "subscriber_id": sid, "segment": "[bold]x", "score": 0.5,
                 "reasons": [{"kind": "indicator", "indicator": "[/]"}],
                 "actions": [{"id": "[i]a", "team": "t"}]}
        text, html = _printed(lambda c: c.print(alert_line(alert)))
        assert sid in text and "[bold]x" in text and "[i]a" in text
        assert "href=" not in html


def test_an_inspect_report_prints_ids_as_text() -> None:
    for sid in HOSTILE:
        text, _ = _printed(lambda c: render_inspect(c, {"known": False, "subscriber_id": sid}))
        assert f"{sid}: no events seen" in text
        report = {"known": True, "subscriber_id": sid, "segment": "[/]", "score": 0.1,
                  "severity": None, "rules": ["[b]r"], "indicators": {"[x]": True},
                  "features": {"[y]": 1.0}, "missing_features": [], "alerts": []}
        text, html = _printed(lambda c: render_inspect(c, report))
        assert sid in text and "[b]r" in text and "[x]" in text and "[y]" in text
        assert "href=" not in html
