"""`churnwatch effect`: the incrementality ledger (alerting/effect.py) from Redis."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from churnwatch.cli.common import ConfigOpt, JsonOpt, fail, load, with_redis
from churnwatch.core.errors import ChurnwatchError

ByOpt = Annotated[str, typer.Option("--by", help="reason (action x segment x reason), rule "
                                    "(action x segment x rule), band (action x segment x model "
                                    "score band) or segment (action x segment)")]


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}"


def _rate(k: int, n: int) -> str:
    return f"{k / n:.0%} of {n}" if n else "-"


def effect_command(config: ConfigOpt = None, json_out: JsonOpt = False,
                   by: ByOpt = "reason") -> None:
    """Incremental effect of each retention action: retained rate treated vs holdout, the
    difference with its 95 % interval, contacts, offer cost and retained value."""
    from alerting.effect import report as ledger_report
    from alerting.effect_store import EffectLedger
    from alerting.playbook import load_playbook

    if by not in ("reason", "rule", "band", "segment"):
        raise fail(ChurnwatchError("--by must be reason, rule, band or segment"))
    settings = load(config)
    try:
        playbook = load_playbook(settings.playbook_file)
    except ChurnwatchError as exc:
        raise fail(exc) from None

    async def read(client: Any) -> dict[str, int]:
        return await EffectLedger(client, config=playbook.effect).counts()

    report = ledger_report(with_redis(settings, read), playbook.effect.economics, by,
                           playbook.effect.window_days)
    if json_out:
        print(orjson.dumps(report).decode())
        return
    table = Table("action", "segment", by if by != "segment" else "", "contacts",
                  "treated retained", "control retained", "diff pts", "95 % interval",
                  "cost", "retained value",
                  title=f"incremental retention ({report['window_days']:g}-day window)")
    for r in report["rows"]:
        interval = "-" if r["low"] is None else f"[{_pts(r['low'])}, {_pts(r['high'])}]"
        style = "red" if r["high"] is not None and r["high"] < 0 else \
            "green" if r["low"] is not None and r["low"] > 0 else ""
        table.add_row(r["action"], r["segment"], r.get(by, "") if by != "segment" else "",
                      str(r["contacts"]), _rate(r["treated_retained"], r["treated"]),
                      _rate(r["control_retained"], r["control"]), _pts(r["difference"]),
                      interval, f"{r['offer_cost']:,.0f}",
                      "-" if r["retained_value"] is None else f"{r['retained_value']:,.0f}",
                      style=style)
    console = Console()
    console.print(table)
    for cell in report["backfiring"]:
        console.print(f"[red]backfires:[/] {cell['action']} in {cell['segment']} "
                      "(suppressed there when suppress_backfiring = true)")
