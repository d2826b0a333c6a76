"""Rule evaluation over a batch's feature matrix: a numba kernel generated per ruleset.

:func:`compile_ruleset` turns a validated :class:`Ruleset` into Python source for one
``@njit`` loop over the rows (features → indicators → segment → rule hits → severity),
compiles it once and warms it up. :func:`evaluate_reference` is the plain-Python twin used
as the oracle in tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np

from churnwatch.core.severity import SEVERITY_RANK
from rules import expr
from rules.ruleset import INPUT_INDEX, INPUTS, MODEL_INPUTS, Ruleset


@dataclass(frozen=True)
class Evaluation:
    """Per-row results: indicator bits, rule hits (shadow included), severity rank
    (0 none, 1 low, 2 medium, 3 high; shadow rules excluded) and segment index."""

    indicators: np.ndarray
    hits: np.ndarray
    severity: np.ndarray
    segment: np.ndarray


def _empty(ruleset: Ruleset, n: int) -> Evaluation:
    return Evaluation(
        np.zeros((n, len(ruleset.indicators)), dtype=np.bool_),
        np.zeros((n, len(ruleset.rules)), dtype=np.bool_),
        np.zeros(n, dtype=np.int8),
        np.zeros(n, dtype=np.int16),
    )


def kernel_source(ruleset: Ruleset) -> str:
    """The generated kernel's Python source (names are sanitised; nothing user-typed is
    emitted except through the checked expression AST)."""
    ind_var = {ind.name: f"ind_{k}" for k, ind in enumerate(ruleset.indicators)}

    def rename(name: str) -> str:
        return ind_var.get(name) or f"f_{INPUT_INDEX[name]}"

    used = sorted({INPUT_INDEX[n] for i in ruleset.indicators for n in expr.names(i.tree)
                   if n in INPUT_INDEX}
                  | {INPUT_INDEX[n] for s in ruleset.segments for n in expr.names(s.tree)})
    lines = [
        "def kernel(X, ind, hits, sev, seg):",
        "    for i in range(X.shape[0]):",
    ]
    lines += [f"        f_{k} = X[i, {k}]" for k in used]
    for k, ind in enumerate(ruleset.indicators):
        lines.append(f"        ind_{k} = bool({expr.to_source(ind.tree, rename)})")
        lines.append(f"        ind[i, {k}] = ind_{k}")
    lines.append(f"        segment = {len(ruleset.segments)}")
    for k, segment in reversed(list(enumerate(ruleset.segments))):
        lines.append(f"        if {expr.to_source(segment.tree, rename)}:")
        lines.append(f"            segment = {k}")
    lines.append("        seg[i] = segment")
    lines.append("        severity = 0")
    names = ruleset.segment_names
    for r, rule in enumerate(ruleset.rules):
        count = " + ".join(f"int({ind_var[name]})" for name in rule.of)
        cond = f"({count}) >= {rule.at_least}"
        if rule.segments:
            allowed = " or ".join(f"segment == {names.index(s)}" for s in rule.segments)
            cond = f"{cond} and ({allowed})"
        lines.append(f"        hit = {cond}")
        lines.append(f"        hits[i, {r}] = hit")
        if not rule.shadow:
            rank = SEVERITY_RANK[rule.severity]
            lines.append(f"        if hit and severity < {rank}:")
            lines.append(f"            severity = {rank}")
    lines.append("        sev[i] = severity")
    return "\n".join(lines) + "\n"


class CompiledRuleset:
    """A ruleset with its compiled, warmed-up kernel."""

    def __init__(self, ruleset: Ruleset, kernel: Callable[..., None]) -> None:
        self.ruleset = ruleset
        self._kernel = kernel

    @property
    def version(self) -> str:
        return self.ruleset.version

    def evaluate(self, matrix: np.ndarray, model: np.ndarray | None = None) -> Evaluation:
        """Evaluate every rule on every row of a (rows × FEATURES) float64 matrix; ``model``
        holds the MODEL_INPUTS columns (NaN when absent: model conditions are then false)."""
        out = _empty(self.ruleset, matrix.shape[0])
        if matrix.shape[0]:
            self._kernel(with_model_inputs(matrix, model),
                         out.indicators, out.hits, out.severity, out.segment)
        return out


def with_model_inputs(matrix: np.ndarray, model: np.ndarray | None = None) -> np.ndarray:
    """The rules' input matrix: features followed by the model's columns (or NaN)."""
    if matrix.shape[1] == len(INPUTS):
        return np.ascontiguousarray(matrix, dtype=np.float64)
    extra = (np.full((matrix.shape[0], len(MODEL_INPUTS)), np.nan) if model is None
             else np.asarray(model, dtype=np.float64).reshape(matrix.shape[0], len(MODEL_INPUTS)))
    return np.ascontiguousarray(np.hstack([matrix, extra]), dtype=np.float64)


def compile_ruleset(ruleset: Ruleset) -> CompiledRuleset:
    """Generate, compile and warm up the kernel for a ruleset (seconds; once per version)."""
    namespace: dict[str, Any] = {}
    exec(compile(kernel_source(ruleset), f"<ruleset {ruleset.version}>", "exec"), namespace)
    kernel = numba.njit(nogil=True, error_model="numpy")(namespace["kernel"])
    compiled = CompiledRuleset(ruleset, kernel)
    compiled.evaluate(np.full((1, len(INPUTS)), np.nan))
    return compiled


def evaluate_reference(ruleset: Ruleset, matrix: np.ndarray,
                       model: np.ndarray | None = None) -> Evaluation:
    """The same evaluation in plain Python, row by row (slow; the oracle for the kernel)."""
    matrix = with_model_inputs(matrix, model)
    out = _empty(ruleset, matrix.shape[0])
    names = ruleset.segment_names
    for i, row in enumerate(matrix):
        env: dict[str, float | bool] = {name: float(row[k]) for k, name in enumerate(INPUTS)}
        for k, ind in enumerate(ruleset.indicators):
            env[ind.name] = out.indicators[i, k] = bool(expr.evaluate(ind.tree, env))
        segment = next((k for k, s in enumerate(ruleset.segments) if expr.evaluate(s.tree, env)),
                       len(ruleset.segments))
        out.segment[i] = segment
        for r, rule in enumerate(ruleset.rules):
            hit = sum(bool(env[name]) for name in rule.of) >= rule.at_least and (
                not rule.segments or names[segment] in rule.segments)
            out.hits[i, r] = hit
            if hit and not rule.shadow:
                out.severity[i] = max(out.severity[i], SEVERITY_RANK[rule.severity])
    return out


def explain(ruleset: Ruleset, row: np.ndarray, indicators: np.ndarray) -> list[dict[str, Any]]:
    """Reasons for one row: each indicator that holds, its condition and its features' values."""
    reasons = []
    for k, ind in enumerate(ruleset.indicators):
        if not indicators[k]:
            continue
        values = {n: _json_number(row[INPUT_INDEX[n]]) for n in expr.names(ind.tree)
                  if n in INPUT_INDEX and INPUT_INDEX[n] < len(row)}
        reasons.append({"indicator": ind.name, "description": ind.description,
                        "condition": ind.when, "values": values})
    return reasons


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
