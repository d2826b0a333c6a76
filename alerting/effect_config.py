"""The playbook's measurement and allocation settings, validated when it loads.

In the playbook TOML (docs/configuration.md, "Retention effect and allocation")::

    [effect]
    window_days = 30     # churn within this many days after an alert = not retained
    grace_days = 2       # how late a churn event may arrive before the window is closed

    [allocation]
    strategy = "thompson"   # or "fixed": the first alternative in playbook order
    min_outcomes = 100      # contacts per arm and segment before sampling takes over
    min_control = 30        # holdout outcomes in a segment before an action can be judged
                            # backfiring there (and suppressed)
    objective = "retention" # or "margin": incremental retention × value − cost
    suppress_backfiring = true

    [value]              # value of one retained subscriber, by segment
    default = 300.0
    high_end_business = 3000.0

and per action: ``group = "save"`` (the actions of one group are alternatives: an alert
gets one of them), ``cost = 12.0`` (one contact) and ``cost_by_segment = { young = 8.0 }``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerting.effect import Economics
from churnwatch.core.errors import RulesError

STRATEGIES = ("thompson", "fixed")
OBJECTIVES = ("retention", "margin")


@dataclass(frozen=True)
class EffectConfig:
    window_days: float = 30.0
    grace_days: float = 2.0
    strategy: str = "thompson"
    min_outcomes: int = 100
    objective: str = "retention"
    suppress_backfiring: bool = True
    economics: Economics = field(default_factory=Economics)
    min_control: int = 30


def _fail(source: str, key: str, problem: str, fix: str) -> RulesError:
    return RulesError(f"{source}: {key}: {problem}. Fix: {fix}")


def _number(source: str, key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or (positive and value == 0):
        raise _fail(source, key, f"{value!r} is not a {'positive' if positive else 'non-negative'}"
                    " number", f"e.g. {key.rsplit('.', 1)[-1]} = 30")
    return float(value)


def _whole(source: str, key: str, value: Any, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(source, key, f"{value!r} is not a whole number >= 0",
                    f"e.g. {key.rsplit('.', 1)[-1]} = {example}")
    return value


def _table(source: str, key: str, value: Any, allowed: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a table", f"write [{key}] with key = value lines")
    if allowed is not None:
        extra = sorted(set(value) - allowed)
        if extra:
            raise _fail(source, f"{key}.{extra[0]}", "unknown key",
                        f"use only {', '.join(sorted(allowed))}")
    return value


def parse_action_economics(source: str, key: str, spec: Mapping[str, Any]) -> tuple[
        str | None, float | None, dict[str, float]]:
    """An action's (group, cost, cost_by_segment)."""
    group = spec.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise _fail(source, f"{key}.group", "must be a non-empty name", 'e.g. group = "save"')
    cost = spec.get("cost")
    cost = None if cost is None else _number(source, f"{key}.cost", cost)
    by_segment = _table(source, f"{key}.cost_by_segment", spec.get("cost_by_segment", {}))
    return group, cost, {seg: _number(source, f"{key}.cost_by_segment.{seg}", v)
                         for seg, v in by_segment.items()}


def parse_effect_config(source: str, doc: Mapping[str, Any],
                        costs: Mapping[str, tuple[float | None, dict[str, float]]]) -> EffectConfig:
    """The ``[effect]``, ``[allocation]`` and ``[value]`` tables with the actions' costs."""
    eff = _table(source, "effect", doc.get("effect", {}), {"window_days", "grace_days"})
    alloc = _table(source, "allocation", doc.get("allocation", {}),
                   {"strategy", "min_outcomes", "min_control", "objective",
                    "suppress_backfiring"})
    value = _table(source, "value", doc.get("value", {}))
    strategy = alloc.get("strategy", "thompson")
    if strategy not in STRATEGIES:
        raise _fail(source, "allocation.strategy", f"{strategy!r} is not a strategy",
                    f"use one of {', '.join(STRATEGIES)}")
    objective = alloc.get("objective", "retention")
    if objective not in OBJECTIVES:
        raise _fail(source, "allocation.objective", f"{objective!r} is not an objective",
                    f"use one of {', '.join(OBJECTIVES)}")
    minimum = _whole(source, "allocation.min_outcomes", alloc.get("min_outcomes", 100), 100)
    min_control = _whole(source, "allocation.min_control", alloc.get("min_control", 30), 30)
    suppress = alloc.get("suppress_backfiring", True)
    if not isinstance(suppress, bool):
        raise _fail(source, "allocation.suppress_backfiring", "must be true or false",
                    "suppress_backfiring = true")
    values = {seg: _number(source, f"value.{seg}", v) for seg, v in value.items()}
    default_value = values.pop("default", 0.0)
    if objective == "margin" and not values and not default_value:
        raise _fail(source, "allocation.objective", "margin needs the value of a retained "
                    "subscriber", "add a [value] table, e.g. default = 300")
    economics = Economics(values, default_value,
                          {a: c for a, (c, _) in costs.items() if c is not None},
                          {(a, seg): c for a, (_, by) in costs.items() for seg, c in by.items()})
    return EffectConfig(
        _number(source, "effect.window_days", eff.get("window_days", 30), positive=True),
        _number(source, "effect.grace_days", eff.get("grace_days", 2)),
        strategy, minimum, objective, suppress, economics, min_control)


def check_effect_segments(source: str, config: EffectConfig, known: tuple[str, ...]) -> None:
    """Fail on a segment name in ``[value]`` or a ``cost_by_segment`` the ruleset lacks."""
    econ = config.economics
    named = [(f"value.{seg}", seg) for seg in econ.value]
    named += [(f"{action}.cost_by_segment.{seg}", seg) for action, seg in econ.cost_by_segment]
    for key, seg in named:
        if seg not in known:
            raise _fail(source, key, f"unknown segment {seg!r}", f"use one of {', '.join(known)}")
