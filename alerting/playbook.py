"""The retention playbook: which actions an alert gets, chosen by severity, segment and reasons."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from alerting.alert import Action
from alerting.effect_config import (
    EffectConfig,
    check_effect_segments,
    parse_action_economics,
    parse_effect_config,
)
from churnwatch.core.errors import RulesError
from churnwatch.core.severity import SEVERITIES
from features.schema import FEATURES
from rules import expr

_FIELDS = {"id", "description", "team", "severities", "segments", "exclude_segments", "when",
           "deadline_hours", "params", "channel", "offer", "group", "cost", "cost_by_segment"}
CHANNELS = ("call", "message", "visit", "internal")


@dataclass(frozen=True)
class PlaybookEntry:
    action: Action
    severities: frozenset[str]
    segments: frozenset[str]
    exclude_segments: frozenset[str]
    when: ast.Expression | None
    group: str | None = None  # the actions of a group are alternatives (alerting.allocate)

    def matches(self, severity: str, segment: str, env: dict[str, float]) -> bool:
        return ((not self.severities or severity in self.severities)
                and (not self.segments or segment in self.segments)
                and segment not in self.exclude_segments
                and (self.when is None or bool(expr.evaluate(self.when, env))))


@dataclass(frozen=True)
class Playbook:
    version: str
    entries: tuple[PlaybookEntry, ...]
    source: str = "<string>"
    effect: EffectConfig = EffectConfig()

    @property
    def groups(self) -> dict[str, str]:
        """Action id → its group of alternatives (actions in no group are left out)."""
        return {e.action.id: e.group for e in self.entries if e.group is not None}

    def check_segments(self, known: tuple[str, ...]) -> None:
        """Fail if an action names a segment the ruleset does not define (a typo never matches)."""
        check_effect_segments(self.source, self.effect, known)
        for n, entry in enumerate(self.entries):
            for field in ("segments", "exclude_segments"):
                bad = sorted(getattr(entry, field) - set(known))
                if bad:
                    raise _fail(self.source, f"actions[{n}].{field}", f"unknown segment {bad[0]!r}",
                                f"use one of {', '.join(known)}")

    def choose(self, severity: str, segment: str, row: np.ndarray) -> list[Action]:
        """The actions for an alert of this severity and segment with these features."""
        env = {name: float(row[i]) for i, name in enumerate(FEATURES)}
        return [e.action for e in self.entries if e.matches(severity, segment, env)]


def _fail(source: str, key: str, problem: str, fix: str) -> RulesError:
    return RulesError(f"{source}: {key}: {problem}. Fix: {fix}")


def parse_playbook(text: str, source: str = "<string>") -> Playbook:
    """Parse and validate a playbook TOML document."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}. Fix the syntax at that line.") from None
    unknown = sorted(set(doc) - {"version", "actions", "effect", "allocation", "value"})
    if unknown:
        raise _fail(source, unknown[0], "unknown top-level key",
                    "use only version, [effect], [allocation], [value] and [[actions]] blocks")
    entries = []
    seen: set[str] = set()
    costs: dict[str, tuple[float | None, dict[str, float]]] = {}
    actions = doc.get("actions", [])
    if not isinstance(actions, list):
        raise _fail(source, "actions", "must be an array of tables", "write [[actions]] blocks")
    for n, spec in enumerate(actions):
        key = f"actions[{n}]"
        if not isinstance(spec, dict):
            raise _fail(source, key, "must be a table", "write [[actions]] blocks")
        extra = set(spec) - _FIELDS
        if extra:
            raise _fail(source, f"{key}.{sorted(extra)[0]}", "unknown field",
                        f"use only {', '.join(sorted(_FIELDS))}")
        action_id, team = spec.get("id"), spec.get("team")
        if not isinstance(action_id, str) or not action_id or action_id in seen:
            raise _fail(source, f"{key}.id", "missing or duplicate action id", "give a unique id")
        if not isinstance(team, str) or not team:
            raise _fail(source, f"{key}.team", "missing owning team", 'e.g. team = "customer-care"')
        for field in ("severities", "segments", "exclude_segments"):
            # a bare string would be read as a set of letters and silently never match
            value = spec.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail(source, f"{key}.{field}", "must be a list of names",
                            f'write {field} = ["..."] (brackets even for one name)')
        if not isinstance(spec.get("params", {}), dict):
            raise _fail(source, f"{key}.params", "must be a table", "e.g. params = { data_gb = 10 }")
        if not isinstance(spec.get("when", ""), str):
            raise _fail(source, f"{key}.when", "must be a string",
                        'write a condition in quotes, e.g. when = "complaints_30d >= 1"')
        bad = [s for s in spec.get("severities", []) if s not in SEVERITIES]
        if bad:
            raise _fail(source, f"{key}.severities", f"unknown severity {bad[0]!r}",
                        f"use {', '.join(SEVERITIES)}")
        deadline = spec.get("deadline_hours", 24)
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0:
            raise _fail(source, f"{key}.deadline_hours", "must be a positive number", "e.g. 24")
        when = None
        if spec.get("when"):
            try:
                when = expr.parse(spec["when"])
                unknown = [n for n in expr.names(when) if n not in FEATURES]
                if unknown:
                    raise expr.ExpressionError(f"unknown feature '{unknown[0]}'")
                if expr.infer_type(when, set()) != "bool":
                    raise expr.ExpressionError("this is a number, not a condition")
            except expr.ExpressionError as exc:
                raise _fail(source, f"{key}.when", f"invalid condition {spec['when']!r}",
                            str(exc)) from None
        params: dict[str, Any] = dict(spec.get("params", {}))
        channel = spec.get("channel", "internal")
        if channel not in CHANNELS:
            raise _fail(source, f"{key}.channel", f"{channel!r} is not a channel",
                        f"use one of {', '.join(CHANNELS)}")
        offer = spec.get("offer", False)
        if not isinstance(offer, bool):
            raise _fail(source, f"{key}.offer", "must be true or false", "offer = true")
        group, cost, cost_by_segment = parse_action_economics(source, key, spec)
        costs[action_id] = (cost, cost_by_segment)
        seen.add(action_id)
        entries.append(PlaybookEntry(
            Action(action_id, team, float(deadline), params, str(spec.get("description", "")),
                   channel, offer),
            frozenset(spec.get("severities", [])), frozenset(spec.get("segments", [])),
            frozenset(spec.get("exclude_segments", [])), when, group))
    if not entries:
        raise _fail(source, "actions", "no actions defined", "add [[actions]] blocks")
    return Playbook(str(doc.get("version", "unversioned")), tuple(entries), source,
                    parse_effect_config(source, doc, costs))


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load a playbook file, or the shipped default when path is None."""
    if path is None:
        text = resources.files("alerting").joinpath("default_playbook.toml").read_text()
        return parse_playbook(text, "alerting/default_playbook.toml")
    file = Path(path)
    try:
        return parse_playbook(file.read_text(encoding="utf-8"), str(file))
    except OSError as exc:
        raise RulesError(f"{file}: cannot read playbook ({exc.strerror}). Fix the path.") from None
