"""The rules expression language: a safe subset of Python expressions over feature names.

Allowed: numbers, feature and indicator names, ``+ - * /``, comparisons (chains too),
``and``/``or``/``not`` and parentheses. Everything else is rejected with a message saying
what is not allowed. Arithmetic is float64 with IEEE semantics (x/0 → inf, NaN compares
false), identical in the numba kernel and the pure-Python reference.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping

import numpy as np

from churnwatch.core.errors import RulesError

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMPOPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)


class ExpressionError(RulesError):
    """An expression outside the language; the message says what and how to fix it."""


def parse(text: str) -> ast.Expression:
    """Parse and check an expression; raise ExpressionError naming the offending part."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.And, ast.Or, ast.Not, ast.USub,
                             ast.UAdd, *_BINOPS, *_CMPOPS)):
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            continue
        if isinstance(node, (ast.BoolOp, ast.Compare, ast.Name)):
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            continue
        raise ExpressionError(
            f"'{ast.unparse(node)}' is not allowed: use numbers, feature names, + - * /, "
            "comparisons, and/or/not"
        )
    return tree


def names(tree: ast.AST) -> list[str]:
    """Names referenced by an expression, in first-use order."""
    seen: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            seen.setdefault(node.id, None)
    return list(seen)


def to_source(tree: ast.Expression, rename: Callable[[str], str]) -> str:
    """Python source of the expression with every name replaced by ``rename(name)``."""

    class _Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.copy_location(ast.Name(id=rename(node.id), ctx=ast.Load()), node)

        def visit_Constant(self, node: ast.Constant) -> ast.AST:
            if isinstance(node.value, bool):
                return node
            return ast.copy_location(ast.Constant(value=float(node.value)), node)

    return ast.unparse(_Rename().visit(ast.parse(ast.unparse(tree), mode="eval")))


def evaluate(tree: ast.Expression, env: Mapping[str, float | bool]) -> float | bool:
    """Reference evaluation of a checked expression (float64 IEEE arithmetic)."""
    return _eval(tree.body, env)


def _eval(node: ast.AST, env: Mapping[str, float | bool]) -> float | bool:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, bool) else float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BoolOp):
        values = [bool(_eval(v, env)) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not value
        return -float(value) if isinstance(node.op, ast.USub) else float(value)
    if isinstance(node, ast.BinOp):
        left, right = np.float64(_eval(node.left, env)), np.float64(_eval(node.right, env))
        with np.errstate(all="ignore"):
            if isinstance(node.op, ast.Add):
                return float(left + right)
            if isinstance(node.op, ast.Sub):
                return float(left - right)
            if isinstance(node.op, ast.Mult):
                return float(left * right)
            return float(left / right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, env)
            if not _compare(op, float(left), float(right)):
                return False
            left = right
        return True
    raise ExpressionError(f"cannot evaluate '{ast.unparse(node)}'")


def _compare(op: ast.cmpop, a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return isinstance(op, ast.NotEq)
    if isinstance(op, ast.Lt):
        return a < b
    if isinstance(op, ast.LtE):
        return a <= b
    if isinstance(op, ast.Gt):
        return a > b
    if isinstance(op, ast.GtE):
        return a >= b
    if isinstance(op, ast.Eq):
        return a == b
    return a != b


def infer_type(tree: ast.Expression, booleans: set[str]) -> str:
    """"bool" or "num" for a checked expression; ExpressionError on a type mismatch."""
    return _type(tree.body, booleans)


def _type(node: ast.AST, booleans: set[str]) -> str:
    def need(child: ast.AST, kind: str) -> None:
        got = _type(child, booleans)
        if got != kind:
            word = "a number" if kind == "num" else "a true/false condition"
            raise ExpressionError(
                f"'{ast.unparse(child)}' is {'a condition' if got == 'bool' else 'a number'} "
                f"where {word} is needed"
            )

    if isinstance(node, ast.Constant):
        return "bool" if isinstance(node.value, bool) else "num"
    if isinstance(node, ast.Name):
        return "bool" if node.id in booleans else "num"
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            need(value, "bool")
        return "bool"
    if isinstance(node, ast.UnaryOp):
        kind = "bool" if isinstance(node.op, ast.Not) else "num"
        need(node.operand, kind)
        return kind
    if isinstance(node, ast.BinOp):
        need(node.left, "num")
        need(node.right, "num")
        return "num"
    if isinstance(node, ast.Compare):
        for child in (node.left, *node.comparators):
            need(child, "num")
        return "bool"
    raise ExpressionError(f"'{ast.unparse(node)}' is not allowed")
