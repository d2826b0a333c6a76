"""Rulesets: named indicators, rules over indicators and RFM segments, loaded from TOML.

Loading validates everything up front; an invalid file raises :class:`RulesError` naming
the file, the key and the fix, so a bad ruleset never reaches a worker's hot path.
"""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from churnwatch.core.errors import RulesError
from churnwatch.core.severity import SEVERITIES
from features.schema import FEATURES

# What the online model adds to every row before the rules run (so rules can combine both):
# its churn probability and how many positive and negative labels it has learned from.
MODEL_INPUTS = ("model_score", "model_positives", "model_negatives")
INPUTS = FEATURES + MODEL_INPUTS
INPUT_INDEX = {name: i for i, name in enumerate(INPUTS)}
from rules import expr

DEFAULT_SEGMENT = "regular"


@dataclass(frozen=True)
class Indicator:
    """A named condition over features (and earlier indicators)."""

    name: str
    when: str
    tree: ast.Expression
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """Fires when at least ``at_least`` of ``of`` indicators hold (and the segment matches)."""

    id: str
    of: tuple[str, ...]
    at_least: int
    severity: str
    cooldown_days: float = 7.0
    segments: tuple[str, ...] = ()
    shadow: bool = False
    description: str = ""


@dataclass(frozen=True)
class Segment:
    """An RFM segment; the first segment whose condition holds is the subscriber's."""

    name: str
    when: str
    tree: ast.Expression


@dataclass(frozen=True)
class Ruleset:
    """A validated ruleset; ``version`` is the file's declared version or its content hash."""

    version: str
    indicators: tuple[Indicator, ...]
    rules: tuple[Rule, ...]
    segments: tuple[Segment, ...]
    source: str = "<defaults>"

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments) + (DEFAULT_SEGMENT,)

    def indicator(self, name: str) -> Indicator:
        return next(i for i in self.indicators if i.name == name)


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _check_name(source: str, key: str, name: str) -> None:
    if not _NAME.match(name):
        raise _fail(source, key, f"invalid name {name!r}",
                    "use lower-case letters, digits and _ (starting with a letter)")


def _fail(source: str, key: str, problem: str, fix: str) -> RulesError:
    return RulesError(f"{source}: {key}: {problem}. Fix: {fix}")


def _expression(source: str, key: str, text: object, known: set[str], booleans: set[str],
                want: str = "bool") -> ast.Expression:
    if not isinstance(text, str) or not text.strip():
        raise _fail(source, key, "missing or not a string", 'write a condition, e.g. "logins_7d <= 1"')
    try:
        tree = expr.parse(text)
        for name in expr.names(tree):
            if name not in known:
                raise expr.ExpressionError(
                    f"unknown name '{name}'; known inputs: {', '.join(INPUTS)}"
                    + (f"; indicators defined above: {', '.join(sorted(booleans))}" if booleans else "")
                )
        if expr.infer_type(tree, booleans) != want:
            raise expr.ExpressionError("this is a number, not a condition (add a comparison)")
    except expr.ExpressionError as exc:
        raise _fail(source, key, f"invalid expression {text!r}", str(exc)) from None
    return tree


_INDICATOR_FIELDS = {"when", "description"}
_RULE_FIELDS = {"of", "at_least", "severity", "cooldown_days", "segments", "shadow", "description"}
_SEGMENT_FIELDS = {"name", "when"}


def _known_fields(source: str, key: str, spec: dict, fields: set[str]) -> None:
    """A misspelt key (``shadw = true``, ``at_leats = 3``) must not silently fall back to a
    default: a shadow rule would go live."""
    extra = sorted(set(spec) - fields)
    if extra:
        raise _fail(source, f"{key}.{extra[0]}", "unknown field", f"use only {', '.join(sorted(fields))}")


def _table(source: str, doc: dict, key: str) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a table", f"write [{key}.<name>] sections")
    return value


def parse_ruleset(text: str, source: str = "<string>") -> Ruleset:
    """Parse and validate a rules TOML document."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}. Fix the syntax at that line.") from None
    unknown = set(doc) - {"version", "indicators", "rules", "segments"}
    if unknown:
        raise _fail(source, sorted(unknown)[0], "unknown top-level key",
                    "use only version, [indicators.*], [rules.*] and [[segments]]")

    known = set(INPUTS)
    booleans: set[str] = set()
    indicators = []
    for name, spec in _table(source, doc, "indicators").items():
        key = f"indicators.{name}"
        _check_name(source, key, name)
        if name in known:
            raise _fail(source, key, "name clashes with a feature", "rename the indicator")
        if not isinstance(spec, dict):
            raise _fail(source, key, "must be a table", f'write [{key}] with when = "..."')
        _known_fields(source, key, spec, _INDICATOR_FIELDS)
        tree = _expression(source, f"{key}.when", spec.get("when"), known, booleans)
        indicators.append(Indicator(name, spec["when"], tree, str(spec.get("description", ""))))
        known.add(name)
        booleans.add(name)

    segments = []
    raw_segments = doc.get("segments", [])
    if not isinstance(raw_segments, list):
        raise _fail(source, "segments", "must be an array of tables", "write [[segments]] blocks")
    for n, spec in enumerate(raw_segments):
        key = f"segments[{n}]"
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name or name == DEFAULT_SEGMENT:
            raise _fail(source, f"{key}.name", "missing, empty or reserved",
                        f"give each segment a unique name other than '{DEFAULT_SEGMENT}'")
        _check_name(source, f"{key}.name", name)
        _known_fields(source, key, spec, _SEGMENT_FIELDS)
        if any(s.name == name for s in segments):
            raise _fail(source, f"{key}.name", f"duplicate segment '{name}'", "use unique names")
        tree = _expression(source, f"{key}.when", spec.get("when"), set(INPUTS), set())
        segments.append(Segment(name, spec["when"], tree))
    segment_names = {s.name for s in segments} | {DEFAULT_SEGMENT}

    rules = []
    for rule_id, spec in _table(source, doc, "rules").items():
        key = f"rules.{rule_id}"
        _check_name(source, key, rule_id)
        if not isinstance(spec, dict):
            raise _fail(source, key, "must be a table", f"write [{key}] with of = [...]")
        _known_fields(source, key, spec, _RULE_FIELDS)
        of = spec.get("of")
        if not isinstance(of, list) or not of or not all(isinstance(i, str) for i in of):
            raise _fail(source, f"{key}.of", "missing or not a list of indicator names",
                        'write of = ["spend_decline", "complaints"]')
        for name in of:
            if name not in booleans:
                raise _fail(source, f"{key}.of", f"undefined indicator '{name}'",
                            f"define [indicators.{name}] or use one of: {', '.join(sorted(booleans))}")
        at_least = spec.get("at_least", len(of))
        if isinstance(at_least, bool) or not isinstance(at_least, int) \
                or not 1 <= at_least <= len(of):
            raise _fail(source, f"{key}.at_least", f"must be a whole number from 1 to {len(of)}",
                        "at_least counts how many of the listed indicators must hold")
        severity = spec.get("severity")
        if severity not in SEVERITIES:
            raise _fail(source, f"{key}.severity", f"{severity!r} is not a severity",
                        f"use one of {', '.join(SEVERITIES)}")
        cooldown = spec.get("cooldown_days", 7)
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) \
                or not 0 <= cooldown <= 366:
            raise _fail(source, f"{key}.cooldown_days", "must be a number of days from 0 to 366",
                        "e.g. cooldown_days = 7")
        rule_segments = spec.get("segments", [])
        if not isinstance(rule_segments, list) or not all(isinstance(x, str) for x in rule_segments):
            raise _fail(source, f"{key}.segments", "must be a list of segment names",
                        'write segments = ["young"]')
        shadow = spec.get("shadow", False)
        if not isinstance(shadow, bool):
            raise _fail(source, f"{key}.shadow", f"{shadow!r} is not true or false",
                        "write shadow = true or shadow = false (no quotes)")
        bad = [s for s in rule_segments if s not in segment_names]
        if bad:
            raise _fail(source, f"{key}.segments", f"unknown segment '{bad[0]}'",
                        f"use one of {', '.join(sorted(segment_names))}")
        rules.append(Rule(rule_id, tuple(of), at_least, severity, float(cooldown),
                          tuple(rule_segments), shadow,
                          str(spec.get("description", ""))))
    if not rules:
        raise _fail(source, "rules", "no rules defined", "define at least one [rules.<id>]")
    version = str(doc.get("version") or hashlib.sha256(text.encode()).hexdigest()[:12])
    return Ruleset(version, tuple(indicators), tuple(rules), tuple(segments), source)


def load_ruleset(path: str | Path | None = None) -> Ruleset:
    """Load a rules file, or the shipped defaults (``rules/default.toml``) when path is None."""
    if path is None:
        text = resources.files("rules").joinpath("default.toml").read_text()
        return parse_ruleset(text, "rules/default.toml")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{file}: cannot read rules file ({exc.strerror}). Fix the path.") from None
    return parse_ruleset(text, str(file))
