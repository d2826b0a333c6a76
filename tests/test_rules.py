"""Rulesets: the default rules at their exact thresholds, segments, shadow rules, validation
messages, and the numba kernel against the plain-Python reference on random rulesets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from features.schema import FEATURES, INDEX
from rules.engine import compile_ruleset, evaluate_reference, explain
from rules.ruleset import load_ruleset, parse_ruleset

DEFAULT = load_ruleset()
IND = [i.name for i in DEFAULT.indicators]
RULE_IDS = [r.id for r in DEFAULT.rules]
SEGS = DEFAULT.segment_names


@pytest.fixture(scope="module")
def kernel():  # noqa: ANN201
    return compile_ruleset(DEFAULT)


def row(**values: float) -> np.ndarray:
    """A neutral feature row (nothing fires, segment `regular`) with some features set."""
    out = np.zeros(len(FEATURES))
    for name in ("monthly_fee", "days_since_plan_change", "tenure_months", "days_since_login",
                 "days_since_complaint", "days_since_usage"):
        out[INDEX[name]] = math.nan
    out[INDEX["recency_days"]] = 10
    for name, value in values.items():
        out[INDEX[name]] = value
    return out


def both(kernel, rows: list[np.ndarray]):  # noqa: ANN001, ANN201
    """Evaluate with the kernel and the reference; they must agree; return the kernel's."""
    matrix = np.array(rows)
    got, want = kernel.evaluate(matrix), evaluate_reference(kernel.ruleset, matrix)
    for field in ("indicators", "hits", "severity", "segment"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    return got


def test_default_ruleset_loads() -> None:
    assert DEFAULT.version == "default-3"
    assert DEFAULT.source == "rules/default.toml"
    assert IND == ["spend_decline", "login_drop", "complaints", "plan_downgrade", "going_quiet",
                   "model_risk", "model_confirmed"]
    assert RULE_IDS == ["seed_high_risk", "complaints_with_downgrade", "going_quiet",
                        "model_high_risk", "model_confirms_indicator", "single_indicator_watch"]
    seed = DEFAULT.rules[0]
    assert (seed.of, seed.at_least, seed.severity, seed.cooldown_days, seed.shadow) == (
        ("spend_decline", "login_drop", "complaints"), 2, "high", 7.0, False)
    assert DEFAULT.rules[5].shadow is True
    assert SEGS == ("high_end_business", "family", "young", "silent", "regular")


def test_neutral_row_fires_nothing(kernel) -> None:  # noqa: ANN001
    got = both(kernel, [row(), np.full(len(FEATURES), np.nan)])
    assert not got.indicators.any() and not got.hits.any()
    assert got.severity.tolist() == [0, 0]
    assert [SEGS[s] for s in got.segment] == ["regular", "regular"]


SPEND = dict(spend_m4=100.0, spend_m3=80.0, spend_m2=64.0)
THRESHOLDS = [
    # (indicator, features, expected)
    ("spend_decline", dict(SPEND, spend_m1=51.2), True),  # exactly 0.8 × each month
    ("spend_decline", dict(SPEND, spend_m1=51.21), False),
    ("spend_decline", dict(SPEND, spend_m1=0.0), True),
    ("spend_decline", dict(SPEND, spend_m1=51.2, spend_m3=80.01), False),
    ("spend_decline", dict(SPEND, spend_m1=51.2, spend_m2=64.01), False),
    ("spend_decline", dict(spend_m4=0.0, spend_m3=0.0, spend_m2=0.0, spend_m1=0.0), False),
    ("spend_decline", dict(spend_m4=0.01, spend_m3=0.0, spend_m2=0.0, spend_m1=0.0), True),
    ("spend_decline", dict(SPEND, spend_m1=math.nan), False),
    ("login_drop", dict(logins_7d=1, logins_prev28=20), True),
    ("login_drop", dict(logins_7d=0, logins_prev28=20), True),
    ("login_drop", dict(logins_7d=2, logins_prev28=20), False),
    ("login_drop", dict(logins_7d=1, logins_prev28=19), False),
    ("login_drop", dict(logins_7d=1, logins_prev28=21), True),
    ("complaints", dict(complaints_30d=2), True),
    ("complaints", dict(complaints_30d=1), False),
    ("complaints", dict(complaints_30d=3), True),
    ("plan_downgrade", dict(fee_delta=-0.01, days_since_plan_change=30), True),
    ("plan_downgrade", dict(fee_delta=-0.01, days_since_plan_change=31), False),
    ("plan_downgrade", dict(fee_delta=0.0, days_since_plan_change=0), False),
    ("going_quiet", dict(recency_days=60, days_since_login=21), True),
    ("going_quiet", dict(recency_days=59, days_since_login=21), False),
    ("going_quiet", dict(recency_days=60, days_since_login=20), False),
    ("going_quiet", dict(recency_days=60, days_since_login=math.nan), False),
]


def test_indicators_at_exact_thresholds(kernel) -> None:  # noqa: ANN001
    got = both(kernel, [row(**features) for _, features, _ in THRESHOLDS])
    for k, (name, features, expected) in enumerate(THRESHOLDS):
        bits = dict(zip(IND, got.indicators[k].tolist()))
        assert bits[name] is expected, (name, features)
        # nothing else fires on these rows
        assert not any(v for n, v in bits.items() if n != name), (name, features, bits)


OPERATOR = {"spend_decline": dict(SPEND, spend_m1=51.2),
            "login_drop": dict(logins_7d=1, logins_prev28=20),
            "complaints": dict(complaints_30d=2)}


@pytest.mark.parametrize("chosen", [(), ("spend_decline",), ("login_drop",), ("complaints",),
                                    ("spend_decline", "login_drop"),
                                    ("spend_decline", "complaints"),
                                    ("login_drop", "complaints"),
                                    ("spend_decline", "login_drop", "complaints")])
def test_seed_high_risk_two_of_three(kernel, chosen: tuple[str, ...]) -> None:  # noqa: ANN001
    features: dict[str, float] = {}
    for name in chosen:
        features.update(OPERATOR[name])
    got = both(kernel, [row(**features)])
    hits = dict(zip(RULE_IDS, got.hits[0].tolist()))
    assert hits["seed_high_risk"] is (len(chosen) >= 2)
    assert hits["single_indicator_watch"] is (len(chosen) >= 1)  # shadow: hit, no severity
    assert hits["complaints_with_downgrade"] is False and hits["going_quiet"] is False
    assert int(got.severity[0]) == (3 if len(chosen) >= 2 else 0)


def test_shadow_rule_never_raises_severity_but_others_do(kernel) -> None:  # noqa: ANN001
    rows = [row(complaints_30d=2),
            row(complaints_30d=2, fee_delta=-5.0, days_since_plan_change=3),
            row(recency_days=60, days_since_login=21),
            row(recency_days=60, days_since_login=21, **OPERATOR["login_drop"],
                complaints_30d=2)]
    got = both(kernel, rows)
    hits = {rid: got.hits[:, k].tolist() for k, rid in enumerate(RULE_IDS)}
    assert hits == {"seed_high_risk": [False, False, False, True],
                    "complaints_with_downgrade": [False, True, False, False],
                    "going_quiet": [False, False, True, True],
                    "model_high_risk": [False] * 4,  # no model inputs: NaN, never true
                    "model_confirms_indicator": [False] * 4,
                    "single_indicator_watch": [True, True, False, True]}
    # row 0: only the shadow rule hits, so no severity at all
    assert got.severity.tolist() == [0, 2, 1, 3]


def test_explain_lists_indicators_with_their_values(kernel) -> None:  # noqa: ANN001
    r = row(complaints_30d=2, fee_delta=-5.0, days_since_plan_change=math.nan)
    got = both(kernel, [r])
    reasons = explain(DEFAULT, r, got.indicators[0])
    assert reasons == [{"indicator": "complaints", "description": DEFAULT.indicator(
        "complaints").description, "condition": "complaints_30d >= 2",
        "values": {"complaints_30d": 2.0}}]
    r2 = row(fee_delta=-5.0, days_since_plan_change=1, complaints_30d=1)
    got2 = both(kernel, [r2])
    assert explain(DEFAULT, r2, got2.indicators[0])[0]["values"] == {
        "fee_delta": -5.0, "days_since_plan_change": 1.0}


SEGMENT_CASES = [
    (dict(recency_days=30, spend_count_30d=4, spend_amount_30d=500), "high_end_business"),
    (dict(recency_days=31, spend_count_30d=4, spend_amount_30d=500), "family"),
    (dict(recency_days=30, spend_count_30d=3, spend_amount_30d=500), "family"),
    (dict(recency_days=30, spend_count_30d=4, spend_amount_30d=499.99), "family"),
    (dict(recency_days=60, spend_count_30d=3, spend_amount_30d=200), "family"),
    (dict(recency_days=61, spend_count_30d=3, spend_amount_30d=200), "regular"),
    (dict(recency_days=60, spend_count_30d=3, spend_amount_30d=199.99), "regular"),
    (dict(recency_days=30, spend_count_30d=2, spend_amount_30d=100), "young"),
    (dict(recency_days=30, spend_count_30d=3, spend_amount_30d=199.99), "young"),
    (dict(recency_days=0, spend_count_30d=2, spend_amount_30d=99.99), "regular"),
    (dict(recency_days=30, spend_count_30d=1, spend_amount_30d=1000), "regular"),
    (dict(recency_days=90, spend_count_30d=0, spend_amount_30d=0), "silent"),
    (dict(recency_days=89, spend_count_30d=0, spend_amount_30d=0), "regular"),
    (dict(recency_days=400, spend_count_30d=0, spend_amount_30d=0), "silent"),
    (dict(recency_days=math.nan, spend_count_30d=0, spend_amount_30d=0), "regular"),
]


def test_segments_at_thresholds_first_match_wins(kernel) -> None:  # noqa: ANN001
    got = both(kernel, [row(**f) for f, _ in SEGMENT_CASES])
    assert [SEGS[s] for s in got.segment] == [name for _, name in SEGMENT_CASES]


SEGMENTED = """
version = "seg-1"
[indicators.unhappy]
when = "complaints_30d >= 1"
[indicators.very_unhappy]
when = "unhappy and complaints_30d >= 3"
[rules.young_unhappy]
of = ["unhappy"]
severity = "medium"
segments = ["young", "regular"]
[rules.vip_unhappy]
of = ["unhappy", "very_unhappy"]
at_least = 1
severity = "high"
segments = ["vip"]
[rules.watch]
of = ["very_unhappy"]
severity = "high"
shadow = true
[[segments]]
name = "vip"
when = "spend_amount_30d >= 1000"
[[segments]]
name = "young"
when = "spend_amount_30d >= 10"
"""


def test_segment_filters_on_rules_and_indicators_using_indicators() -> None:
    rs = parse_ruleset(SEGMENTED, "seg.toml")
    assert rs.version == "seg-1" and rs.segment_names == ("vip", "young", "regular")
    compiled = compile_ruleset(rs)
    rows = [row(complaints_30d=1, spend_amount_30d=1000),  # vip: vip rule only
            row(complaints_30d=1, spend_amount_30d=999),  # young
            row(complaints_30d=1, spend_amount_30d=0),  # regular
            row(complaints_30d=3, spend_amount_30d=5),  # regular, very unhappy (shadow too)
            row(complaints_30d=0, spend_amount_30d=5000)]  # vip, nothing
    got = both(compiled, rows)
    assert got.segment.tolist() == [0, 1, 2, 2, 0]
    assert got.indicators.tolist() == [[True, False], [True, False], [True, False],
                                       [True, True], [False, False]]
    assert got.hits.tolist() == [[False, True, False], [True, False, False],
                                 [True, False, False], [True, False, True],
                                 [False, False, False]]
    assert got.severity.tolist() == [3, 2, 2, 2, 0]


def test_version_defaults_to_content_hash() -> None:
    text = SEGMENTED.replace('version = "seg-1"\n', "")
    a, b = parse_ruleset(text), parse_ruleset(text + "\n# comment\n")
    assert len(a.version) == 12 and a.version != b.version
    assert parse_ruleset(text).version == a.version


def test_empty_matrix() -> None:
    got = evaluate_reference(DEFAULT, np.empty((0, len(FEATURES))))
    assert got.indicators.shape == (0, len(IND)) and got.severity.shape == (0,)


















# ------------------------------------------------------------------ kernel == reference
FEATURE_NAMES = st.sampled_from(FEATURES)
CONSTANTS = st.sampled_from(["0", "0.0", "1", "2", "0.5", "20", "100", "1e309", "3.25"])


def numbers(depth: int) -> st.SearchStrategy[str]:
    leaf = FEATURE_NAMES | CONSTANTS
    if depth == 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf, leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda x: f"-{x}"),
    )


CMP = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


def conditions(depth: int, names: list[str]) -> st.SearchStrategy[str]:
    num = numbers(2)
    leaf = st.one_of(
        st.tuples(FEATURE_NAMES, CMP, num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(num, CMP, FEATURE_NAMES).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(num, CMP, FEATURE_NAMES, CMP, num).map(lambda t: " ".join(t)),  # chains
        st.tuples(num, CMP, num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        *([st.sampled_from(names)] if names else []),
        st.sampled_from(["True", "False"]),
    )
    if depth == 0:
        return leaf
    sub = conditions(depth - 1, names)
    return st.one_of(
        leaf, leaf,
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda x: f"not ({x})"),
    )


@st.composite
def rulesets(draw: st.DrawFn) -> str:
    lines = ['version = "random"']
    names: list[str] = []
    for k in range(draw(st.integers(1, 5))):
        when = draw(conditions(2, names))
        lines += [f"[indicators.i{k}]", f'when = "{when}"']
        names.append(f"i{k}")
    segments = [f"s{k}" for k in range(draw(st.integers(0, 3)))]
    for rid in range(draw(st.integers(1, 4))):
        of = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
        lines += [f"[rules.r{rid}]", f"of = {of!r}".replace("'", '"'),
                  f"at_least = {draw(st.integers(1, len(of)))}",
                  f'severity = "{draw(st.sampled_from(["low", "medium", "high"]))}"',
                  f"shadow = {'true' if draw(st.booleans()) else 'false'}"]
        allowed = draw(st.lists(st.sampled_from(segments + ["regular"]), max_size=2, unique=True))
        if allowed:
            lines.append(f"segments = {allowed!r}".replace("'", '"'))
    for name in segments:
        lines += ["[[segments]]", f'name = "{name}"', f'when = "{draw(conditions(1, []))}"']
    return "\n".join(lines) + "\n"


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 2.0, 0.5, 20.0, 100.0, -1.0,
                    3.25, 1e308, -1e308, 5e-324])


# Every example compiles a kernel (~0.3-1 s), so shrinking a failure would take minutes: it is
# switched off, and the failing ruleset's full text is in the assertion message instead.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(rulesets(), st.integers(0, 2**32 - 1))
def test_kernel_matches_reference_on_random_rulesets(text: str, seed: int) -> None:
    ruleset = parse_ruleset(text, "random.toml")
    rng = np.random.default_rng(seed)
    n = 400
    matrix = rng.choice(SPECIAL, size=(n, len(FEATURES)))
    mixed = rng.random((n, len(FEATURES))) < 0.3
    matrix[mixed] = rng.normal(0, 50, size=mixed.sum()).round(rng.integers(0, 3))
    matrix[: n // 8] = np.nan  # whole rows of NaN
    matrix[n // 8: n // 4] = 0.0  # and of zeros (0/0, x/0)
    want = evaluate_reference(ruleset, matrix)
    # spend the expensive compiles on rulesets that discriminate between rows
    varies = (want.indicators.any(axis=0) & ~want.indicators.all(axis=0)).any()
    assume(varies and want.hits.any())
    got = compile_ruleset(ruleset).evaluate(matrix)
    for field in ("indicators", "hits", "severity", "segment"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), (field, text)
    # severity is the max rank of the non-shadow rules that hit
    rank = {"low": 1, "medium": 2, "high": 3}
    expected = np.zeros(n, dtype=np.int8)
    for r, rule in enumerate(ruleset.rules):
        if not rule.shadow:
            expected = np.maximum(expected, np.where(want.hits[:, r], rank[rule.severity], 0))
    assert np.array_equal(want.severity, expected)



def test_model_inputs_combine_with_indicators(kernel) -> None:  # noqa: ANN001
    """model_score ≥ 0.85 alone gives a medium alert once the model has learned both outcomes;
    ≥ 0.95 with one operator indicator it is high; an untrained model (too few labels) never
    counts."""
    from rules.engine import evaluate_reference

    rows = np.array([row(), row(complaints_30d=2), row(complaints_30d=2), row(),
                     row(complaints_30d=2)])
    model = np.array([[0.9, 150, 400], [0.96, 150, 400], [0.96, 20, 400], [0.84, 150, 400],
                      [0.9, 150, 400]])
    got = kernel.evaluate(rows, model)
    want = evaluate_reference(DEFAULT, rows, model)
    for field in ("indicators", "hits", "severity", "segment"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    hits = {rid: got.hits[:, k].tolist() for k, rid in enumerate(RULE_IDS)}
    assert hits["model_high_risk"] == [True, True, False, False, True]
    assert hits["model_confirms_indicator"] == [False, True, False, False, False]
    assert got.severity.tolist() == [2, 3, 0, 0, 2]
