"""Metric names queried by a Grafana dashboard, and names exposed by a /metrics page.

A small PromQL scanner, enough for dashboards: it skips string literals, label matchers
``{...}``, range/subquery selectors ``[...]``, numbers and durations, Grafana variables
(``$x``, ``${x}``), functions and aggregations (an identifier followed by ``(``, or an
aggregation followed by ``by``/``without``), keywords, and
the label lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "atan2", "inf", "nan"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0x[0-9A-Fa-f]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[A-Za-z0-9]*")
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,")


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_group(expr: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket group starting at ``expr[i] == open_`` (strings respected)."""
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_!r} in {expr!r}")


def metric_names(expr: str) -> set[str]:
    """Metric names an instant or range PromQL expression selects."""
    names: set[str] = set()
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "{":
            i = _skip_group(expr, i, "{", "}")
        elif c == "[":
            i = _skip_group(expr, i, "[", "]")
        elif c == "$":
            m = _VARIABLE.match(expr, i)
            i = m.end() if m else i + 1
        elif c.isdigit() or (c == "." and expr[i + 1:i + 2].isdigit()):
            i = _NUMBER.match(expr, i).end()  # type: ignore[union-attr]
        elif (m := _IDENT.match(expr, i)) is not None:
            word = m.group(0)
            j = m.end()
            while j < len(expr) and expr[j].isspace():
                j += 1
            follows_paren = j < len(expr) and expr[j] == "("
            if word.lower() in _AGGREGATIONS and re.match(r"(by|without)\b", expr[j:]):
                i = m.end()  # `sum by (...) (...)`: the label list is skipped next
                continue
            if word.lower() in _LABEL_LISTS and follows_paren:
                i = _skip_group(expr, j, "(", ")")
                continue
            if not follows_paren and word.lower() not in _KEYWORDS:
                names.add(word)
            i = m.end()
        else:
            i += 1
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every ``expr`` of every panel (rows and nested panels included) and every templating
    query, as PromQL (``label_values(metric, label)`` becomes ``metric``)."""
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield target["expr"]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        if var.get("type") == "query" and text:
            m = _LABEL_VALUES.search(text)
            yield m.group(1) if m else text


def exposed_names(exposition: str) -> set[str]:
    """Every series name a text exposition can answer for: declared families (with their
    histogram/summary series) and sample names."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def missing_metrics(dashboard: dict[str, Any], exposition: str) -> dict[str, set[str]]:
    """Queried names absent from the exposition, per query (empty when all exist)."""
    known = exposed_names(exposition)
    out: dict[str, set[str]] = {}
    for expr in dashboard_queries(dashboard):
        absent = metric_names(expr) - known
        if absent:
            out[expr] = absent
    return out


INGEST_ROW = "HTTP ingest"  # the dashboard's row of the ingest process's panels
INGEST_VARIABLE = "ingest"


def by_process(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dashboard split by the process whose metrics it queries: ``ingest`` (the panels
    from the "HTTP ingest" row to the next row, and the ``ingest`` variable) and ``worker``
    (everything else)."""
    worker: list[dict[str, Any]] = []
    ingest: list[dict[str, Any]] = []
    current = worker
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            current = ingest if panel.get("title") == INGEST_ROW else worker
        current.append(panel)
    variables = dashboard.get("templating", {}).get("list", [])

    def part(panels: list[dict[str, Any]], ingest_vars: bool) -> dict[str, Any]:
        return {"panels": panels, "templating": {"list": [
            v for v in variables if (v.get("name") == INGEST_VARIABLE) == ingest_vars]}}

    return {"worker": part(worker, False), "ingest": part(ingest, True)}
