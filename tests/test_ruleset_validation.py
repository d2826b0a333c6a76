"""Invalid rulesets are refused at load with the file, the key and the fix; expressions outside the\nlanguage name the offending part; rulesets load from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnwatch.core.errors import RulesError
from rules.ruleset import load_ruleset, parse_ruleset

# ------------------------------------------------------------------ invalid rulesets
MINIMAL = """
[indicators.a]
when = "complaints_30d >= 2"
[rules.r]
of = ["a"]
severity = "high"
"""


def bad(text: str) -> str:
    with pytest.raises(RulesError) as info:
        parse_ruleset(text, "custom/rules.toml")
    message = str(info.value)
    assert message.startswith("custom/rules.toml: "), message
    return message


def test_minimal_is_valid() -> None:
    assert [r.id for r in parse_ruleset(MINIMAL).rules] == ["r"]


INVALID = [
    ("unknown feature", MINIMAL.replace("complaints_30d >= 2", "complaints_7d >= 2"),
     ["indicators.a.when", "unknown name 'complaints_7d'", "known inputs", "logins_7d"]),
    ("later indicator", MINIMAL.replace('when = "complaints_30d >= 2"',
                                        'when = "b and complaints_30d >= 2"\n'
                                        '[indicators.b]\nwhen = "logins_7d < 1"'),
     ["indicators.a.when", "unknown name 'b'"]),
    ("undefined indicator", MINIMAL.replace('of = ["a"]', 'of = ["a", "zzz"]'),
     ["rules.r.of", "undefined indicator 'zzz'", "[indicators.zzz]"]),
    ("bool and number", MINIMAL.replace("complaints_30d >= 2", "logins_7d and complaints_30d"),
     ["indicators.a.when", "'logins_7d' is a number where a true/false condition is needed"]),
    ("number plus bool", MINIMAL.replace("complaints_30d >= 2", "spend_m1 + (logins_7d > 1) > 0"),
     ["indicators.a.when", "'logins_7d > 1' is a condition where a number is needed"]),
    ("number not condition", MINIMAL.replace("complaints_30d >= 2", "complaints_30d * 2"),
     ["indicators.a.when", "not a condition", "comparison"]),
    ("compare bools", MINIMAL.replace('when = "complaints_30d >= 2"',
                                      'when = "complaints_30d >= 2"\n[indicators.b]\n'
                                      'when = "a == (logins_7d > 1)"'),
     ["indicators.b.when", "'a' is a condition where a number is needed"]),
    ("at_least zero", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nat_least = 0'),
     ["rules.r.at_least", "from 1 to 1"]),
    ("at_least too big", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nat_least = 2'),
     ["rules.r.at_least", "from 1 to 1"]),
    ("at_least float", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nat_least = 1.0'),
     ["rules.r.at_least", "whole number"]),
    ("at_least bool", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nat_least = true'),
     ["rules.r.at_least", "whole number"]),
    ("bad severity", MINIMAL.replace('"high"', '"critical"'),
     ["rules.r.severity", "'critical' is not a severity", "low, medium, high"]),
    ("no severity", MINIMAL.replace('severity = "high"', ""),
     ["rules.r.severity", "None is not a severity"]),
    ("cooldown", MINIMAL.replace('of = ["a"]', 'of = ["a"]\ncooldown_days = -1'),
     ["rules.r.cooldown_days", "0 to 366"]),
    ("misspelt shadow", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nshadw = true'),
     ["rules.r.shadw", "unknown field", "shadow"]),
    ("quoted shadow", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nshadow = "false"'),
     ["rules.r.shadow", "true or false"]),
    ("misspelt when", MINIMAL.replace("when =", "wehn ="),
     ["indicators.a.wehn", "unknown field"]),
    ("unknown rule segment", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nsegments = ["vip"]'),
     ["rules.r.segments", "unknown segment 'vip'", "regular"]),
    ("segments not a list", MINIMAL.replace('of = ["a"]', 'of = ["a"]\nsegments = "regular"'),
     ["rules.r.segments", "list"]),
    ("empty of", MINIMAL.replace('of = ["a"]', "of = []"), ["rules.r.of", "list of indicator"]),
    ("no rules", MINIMAL.split("[rules.r]")[0], ["rules: no rules defined"]),
    ("top-level typo", MINIMAL + "\n[segment]\nname = 'x'\n", ["segment: unknown top-level key"]),
    ("bad name", MINIMAL.replace("[rules.r]", '[rules."High Risk"]'),
     ["rules.High Risk", "invalid name"]),
    ("clash with feature", MINIMAL.replace("[indicators.a]", "[indicators.logins_7d]")
     .replace('["a"]', '["logins_7d"]'), ["indicators.logins_7d", "clashes with a feature"]),
    ("reserved segment", MINIMAL + '[[segments]]\nname = "regular"\nwhen = "logins_7d > 1"\n',
     ["segments[0].name", "reserved"]),
    ("duplicate segment", MINIMAL + '[[segments]]\nname = "x"\nwhen = "logins_7d > 1"\n'
     '[[segments]]\nname = "x"\nwhen = "logins_7d > 2"\n', ["segments[1].name", "duplicate"]),
    ("segment uses indicator", MINIMAL + '[[segments]]\nname = "x"\nwhen = "a"\n',
     ["segments[0].when", "unknown name 'a'"]),
    ("missing when", MINIMAL.replace('when = "complaints_30d >= 2"', 'description = "x"'),
     ["indicators.a.when", "missing"]),
    ("toml syntax", MINIMAL.replace('severity = "high"', 'severity = = "high"'),
     ["not valid TOML", "line 6", "Fix"]),
]


@pytest.mark.parametrize(("name", "text", "parts"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_ruleset_is_rejected_with_key_and_fix(name: str, text: str,
                                                      parts: list[str]) -> None:
    message = bad(text)
    for part in parts:
        assert part in message, (part, message)
    assert "Fix" in message, message


@pytest.mark.parametrize(("expression", "culprit"), [
    ("len(logins_7d) > 1", "len(logins_7d)"),
    ("logins_7d.real > 1", "logins_7d.real"),
    ("__import__('os').system('true')", "__import__('os')"),
    ("logins_7d ** 2 > 1", "logins_7d ** 2"),
    ("logins_7d // 2 > 1", "logins_7d // 2"),
    ("logins_7d % 2 > 1", "logins_7d % 2"),
    ("(lambda: 1)() > 0", "lambda"),
    ("[1][0] > 0", "[1]"),
    ("'a' < 'b'", "'a'"),
    ("logins_7d if complaints_30d > 1 else 0", "if"),
    ("(x := 1) > 0", ":="),
    ("logins_7d in (1, 2)", "(1, 2)"),
    ("logins_7d is 1", "is"),
])
def test_disallowed_syntax(expression: str, culprit: str) -> None:
    message = bad(MINIMAL.replace('"complaints_30d >= 2"', f"'''{expression}'''"))
    assert "indicators.a.when" in message
    assert culprit in message and ("not allowed" in message or "unknown name" in message), message


def test_syntax_error_in_expression_names_the_column() -> None:
    message = bad(MINIMAL.replace("complaints_30d >= 2", "complaints_30d >= >= 2"))
    assert "syntax error at column" in message


def test_load_ruleset_from_files(tmp_path: Path) -> None:
    good = tmp_path / "rules.toml"
    good.write_text(MINIMAL)
    assert load_ruleset(good).source == str(good)
    broken = tmp_path / "broken.toml"
    broken.write_text(MINIMAL.replace('"high"', '"severe"'))
    with pytest.raises(RulesError, match=rf"^{broken}: rules.r.severity: 'severe'"):
        load_ruleset(broken)
    with pytest.raises(RulesError, match=r"cannot read rules file .*Fix the path"):
        load_ruleset(tmp_path / "missing.toml")
