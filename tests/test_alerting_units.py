"""Pure alerting pieces and configuration: cooldown decisions, alert ids, the retention
playbook, and load_settings' error messages."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.alert import alert_id
from alerting.cooldown import decide, decode_entry, encode_entry
from alerting.playbook import load_playbook, parse_playbook
from churnwatch.core.errors import ConfigError, RulesError
from churnwatch.infra.settings_load import load_settings
from features.schema import FEATURES, INDEX

DAY = 86_400_000
WEEK = 7 * DAY
T = 1_780_000_000_000
HIGH, MEDIUM, LOW = 3, 2, 1


# ------------------------------------------------------------------ cooldown
def test_first_alert_passes_and_is_recorded() -> None:
    entries: dict[str, bytes] = {}
    assert decide(entries, [("seed_high_risk", HIGH, WEEK)], T, "e1") == ["seed_high_risk"]
    assert entries == {"seed_high_risk": f"{T}|3|e1".encode()}


@pytest.mark.parametrize(("later", "rank", "passes"), [
    (1, HIGH, False),  # same rule inside the cooldown
    (WEEK - 1, HIGH, False),  # 1 ms before the cooldown ends
    (WEEK, HIGH, True),  # exactly when it ends
    (WEEK + 1, HIGH, True),
    (0, HIGH, False),  # same instant
    (1, LOW, False),  # lower severity inside the cooldown
    (WEEK, LOW, True),  # lower severity after it
])
def test_cooldown_same_rule(later: int, rank: int, passes: bool) -> None:
    entries = {"r": encode_entry(T, HIGH, "e1")}
    got = decide(entries, [("r", rank, WEEK)], T + later, "e2")
    assert got == (["r"] if passes else [])
    expected = encode_entry(T + later, rank, "e2") if passes else encode_entry(T, HIGH, "e1")
    assert entries["r"] == expected


def test_higher_severity_inside_cooldown_passes_and_restarts_it() -> None:
    entries = {"r": encode_entry(T, MEDIUM, "e1")}
    assert decide(entries, [("r", HIGH, WEEK)], T + DAY, "e2") == ["r"]
    assert decode_entry(entries["r"]) == (T + DAY, HIGH, "e2")
    # now high is the bar: another high one day later is suppressed, medium too
    assert decide(entries, [("r", HIGH, WEEK)], T + 2 * DAY, "e3") == []
    assert decide(entries, [("r", MEDIUM, WEEK)], T + 2 * DAY, "e4") == []
    # the cooldown counts from the escalation, not from the first alert
    assert decide(entries, [("r", HIGH, WEEK)], T + WEEK + 1, "e5") == []
    assert decide(entries, [("r", HIGH, WEEK)], T + DAY + WEEK, "e6") == ["r"]


@pytest.mark.parametrize(("earlier", "rank"), [(1, HIGH), (1, HIGH + 1), (30 * DAY, HIGH + 1),
                                               (400 * DAY, LOW)])
def test_older_event_never_reopens(earlier: int, rank: int) -> None:
    entries = {"r": encode_entry(T, HIGH, "e1")}
    assert decide(entries, [("r", rank, WEEK)], T - earlier, "late") == []
    assert entries == {"r": encode_entry(T, HIGH, "e1")}


def test_rules_are_independent_and_keep_input_order() -> None:
    entries = {"b": encode_entry(T, LOW, "e1"), "c": encode_entry(T - 30 * DAY, LOW, "e0")}
    rules = [("a", HIGH, WEEK), ("b", LOW, WEEK), ("c", LOW, 14 * DAY), ("d", MEDIUM, 0)]
    assert decide(entries, rules, T + DAY, "e2") == ["a", "c", "d"]
    assert decode_entry(entries["b"]) == (T, LOW, "e1")
    assert decode_entry(entries["c"]) == (T + DAY, LOW, "e2")
    # a zero cooldown alerts every time, but never for an older event
    assert decide(entries, [("d", MEDIUM, 0)], T + DAY, "e3") == ["d"]
    assert decide(entries, [("d", MEDIUM, 0)], T, "e4") == []


def test_entry_roundtrip_with_separator_in_event_id() -> None:
    assert decode_entry(encode_entry(T, 2, "a|b|c")) == (T, 2, "a|b|c")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60 * DAY), st.integers(1, 3)), min_size=1,
                max_size=25))
def test_cooldown_matches_a_plain_model(alerts: list[tuple[int, int]]) -> None:
    """Replaying random events through decide == the rule stated in words."""
    entries: dict[str, bytes] = {}
    last: tuple[int, int] | None = None
    for n, (offset, rank) in enumerate(alerts):
        ts = T + offset
        fired = decide(entries, [("r", rank, WEEK)], ts, f"e{n}") == ["r"]
        expected = last is None or (ts >= last[0] and (ts - last[0] >= WEEK or rank > last[1]))
        assert fired is expected
        if fired:
            last = (ts, rank)
        assert (decode_entry(entries["r"])[:2] if entries else None) == last


# ------------------------------------------------------------------ alert ids
def test_alert_id_is_deterministic_and_order_insensitive() -> None:
    expected = hashlib.sha1("+447911123456\x1fev-9\x1fa_rule\x1fseed_high_risk".encode()).hexdigest()
    assert alert_id("+447911123456", "ev-9", ["seed_high_risk", "a_rule"]) == expected
    assert alert_id("+447911123456", "ev-9", ["a_rule", "seed_high_risk"]) == expected
    assert len(expected) == 40


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20),
       st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), min_size=1, max_size=4,
                unique=True), st.randoms())
def test_alert_id_properties(sub: str, event: str, rules: list[str], rnd) -> None:  # noqa: ANN001
    shuffled = rules[:]
    rnd.shuffle(shuffled)
    base = alert_id(sub, event, rules)
    assert alert_id(sub, event, shuffled) == base
    assert alert_id(sub + "x", event, rules) != base
    assert alert_id(sub, event + "x", rules) != base
    assert alert_id(sub, event, rules + ["zz_extra"]) != base
    if len(rules) > 1:
        assert alert_id(sub, event, rules[1:]) != base


# ------------------------------------------------------------------ playbook
PLAYBOOK = load_playbook()


def features(**values: float) -> np.ndarray:
    row = np.zeros(len(FEATURES))
    for name, value in values.items():
        row[INDEX[name]] = value
    return row


def chosen(severity: str, segment: str, **values: float) -> list[str]:
    return [a.id for a in PLAYBOOK.choose(severity, segment, features(**values))]


def test_default_playbook_loads() -> None:
    assert PLAYBOOK.version == "playbook-2"
    assert PLAYBOOK.groups == {"personal_offer": "save", "sales_follow_up": "save",
                               "data_video_bundle": "save"}  # alternatives (alerting/allocate.py)
    ids = [e.action.id for e in PLAYBOOK.entries]
    assert ids == ["personal_offer", "sales_follow_up", "account_manager_visit", "care_callback",
                   "network_fix", "billing_review", "data_video_bundle", "win_back",
                   "satisfaction_check_in"]
    offer = PLAYBOOK.entries[0].action
    assert (offer.team, offer.deadline_hours, offer.params) == (
        "retention-offers", 24.0, {"data_gb": 10, "fee_discount_pct": 10})


@pytest.mark.parametrize(("severity", "segment", "values", "expected"), [
    ("high", "regular", {}, ["personal_offer", "sales_follow_up"]),
    ("high", "family", {}, ["personal_offer", "sales_follow_up"]),
    ("high", "high_end_business", {}, ["account_manager_visit"]),
    ("medium", "high_end_business", {}, ["account_manager_visit"]),
    ("low", "high_end_business", {}, ["satisfaction_check_in"]),
    ("high", "regular", {"complaints_30d": 2, "complaints_network_30d": 2},
     ["personal_offer", "sales_follow_up", "care_callback", "network_fix"]),
    ("high", "regular", {"complaints_30d": 2, "complaints_billing_30d": 1,
                         "complaints_service_30d": 1},
     ["personal_offer", "sales_follow_up", "care_callback", "billing_review"]),
    ("medium", "regular", {"complaints_30d": 1, "complaints_network_30d": 1},
     ["care_callback", "network_fix"]),
    ("low", "regular", {"complaints_30d": 1, "complaints_network_30d": 1},
     ["satisfaction_check_in"]),
    ("high", "young", {}, ["personal_offer", "sales_follow_up", "data_video_bundle"]),
    ("medium", "young", {}, ["data_video_bundle"]),
    ("high", "silent", {}, ["win_back"]),
    ("low", "silent", {}, ["win_back"]),
    ("medium", "regular", {}, []),
    ("high", "regular", {"complaints_30d": math.nan, "complaints_network_30d": math.nan},
     ["personal_offer", "sales_follow_up"]),
])
def test_default_playbook_choice(severity: str, segment: str, values: dict,
                                 expected: list[str]) -> None:
    assert chosen(severity, segment, **values) == expected


def test_chosen_actions_carry_team_and_params() -> None:
    actions = PLAYBOOK.choose("high", "silent", features())
    assert [(a.id, a.team, a.deadline_hours, a.params) for a in actions] == [
        ("win_back", "retention-offers", 72.0, {"fee_discount_pct": 20})]
    network = [a for a in PLAYBOOK.choose("medium", "regular",
                                          features(complaints_network_30d=1))]
    assert [(a.id, a.team) for a in network] == [("network_fix", "network-ops")]


def test_custom_playbook_filters() -> None:
    pb = parse_playbook("""
version = "p2"
[[actions]]
id = "a"
team = "t1"
severities = ["medium"]
segments = ["young", "family"]
exclude_segments = ["family"]
when = "spend_amount_30d > 10 and not (logins_7d >= 3)"
deadline_hours = 1.5
""", "p2.toml")
    entry = pb.entries[0]
    assert pb.version == "p2" and entry.action.deadline_hours == 1.5
    row = features(spend_amount_30d=10.01, logins_7d=2)
    assert [a.id for a in pb.choose("medium", "young", row)] == ["a"]
    assert pb.choose("medium", "family", row) == []  # excluded wins over listed
    assert pb.choose("high", "young", row) == []
    assert pb.choose("medium", "young", features(spend_amount_30d=10, logins_7d=2)) == []
    assert pb.choose("medium", "young", features(spend_amount_30d=11, logins_7d=3)) == []


ONE = '[[actions]]\nid = "a"\nteam = "t"\n'
INVALID_PLAYBOOKS = [
    ("unknown field", ONE + "severity = ['high']\n", ["actions[0].severity", "unknown field",
                                                      "severities"]),
    ("missing id", '[[actions]]\nteam = "t"\n', ["actions[0].id", "missing or duplicate"]),
    ("duplicate id", ONE + ONE, ["actions[1].id", "duplicate"]),
    ("missing team", '[[actions]]\nid = "a"\n', ["actions[0].team", "owning team"]),
    ("bad severity", ONE + "severities = ['urgent']\n", ["actions[0].severities",
                                                         "'urgent'", "low, medium, high"]),
    ("severities string", ONE + "severities = 'high'\n", ["actions[0].severities", "list"]),
    ("segment string", ONE + "exclude_segments = 'silent'\n",
     ["actions[0].exclude_segments", "list"]),
    ("deadline", ONE + "deadline_hours = 0\n", ["actions[0].deadline_hours", "positive"]),
    ("params", ONE + "params = 3\n", ["actions[0].params", "table"]),
    ("when unknown", ONE + "when = 'complaint_30d > 1'\n",
     ["actions[0].when", "unknown feature 'complaint_30d'"]),
    ("when number", ONE + "when = 'complaints_30d + 1'\n", ["actions[0].when", "not a condition"]),
    ("when call", ONE + "when = \"__import__('os')\"\n", ["actions[0].when", "not allowed"]),
    ("when not text", ONE + "when = 1\n", ["actions[0].when", "string"]),
    ("no actions", 'version = "x"\n', ["actions: no actions defined"]),
    ("actions not array", "actions = 1\n", ["actions: must be an array"]),
    ("top-level typo", ONE + "[[acitons]]\nid = 'b'\n", ["acitons: unknown top-level key"]),
    ("toml", ONE + "team = = 1\n", ["not valid TOML", "line 4"]),
]


@pytest.mark.parametrize(("name", "text", "parts"), INVALID_PLAYBOOKS,
                         ids=[c[0] for c in INVALID_PLAYBOOKS])
def test_invalid_playbook(name: str, text: str, parts: list[str]) -> None:
    with pytest.raises(RulesError) as info:
        parse_playbook(text, "ops/playbook.toml")
    message = str(info.value)
    assert message.startswith("ops/playbook.toml: ")
    assert "Fix" in message
    for part in parts:
        assert part in message, (part, message)


def test_load_playbook_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read playbook .*Fix the path"):
        load_playbook(tmp_path / "nope.toml")
    path = tmp_path / "pb.toml"
    path.write_text(ONE + "deadline_hours = -1\n")
    with pytest.raises(RulesError, match=rf"^{path}: actions\[0\]\.deadline_hours"):
        load_playbook(path)


# ------------------------------------------------------------------ configuration
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("CHURNWATCH_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults_and_stable_env_keys(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = load_settings()
    assert (s.broker, s.redis_url, s.alerts_jsonl, s.scores_jsonl) == ("", "", None, None)
    assert (s.partitions, s.lateness_days, s.metrics_host) == (4, 7.0, "127.0.0.1")
    clean_env.setenv("CHURNWATCH_BROKER", "kafka://127.0.0.1:9092")
    clean_env.setenv("CHURNWATCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    clean_env.setenv("CHURNWATCH_ALERTS_JSONL", str(tmp_path / "a.jsonl"))
    clean_env.setenv("CHURNWATCH_SCORES_JSONL", str(tmp_path / "s.jsonl"))
    s = load_settings()
    assert s.bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.alerts_jsonl, s.scores_jsonl) == (tmp_path / "a.jsonl", tmp_path / "s.jsonl")


def test_precedence_override_env_file_default(clean_env: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    cfg = tmp_path / "cw.toml"
    cfg.write_text("[churnwatch]\npartitions = 6\nbatch_max = 77\nlog_level = 'WARNING'\n")
    clean_env.setenv("CHURNWATCH_CONFIG", str(cfg))
    clean_env.setenv("CHURNWATCH_PARTITIONS", "8")
    s = load_settings()
    assert (s.partitions, s.batch_max, s.log_level) == (8, 77, "warning")
    assert load_settings(partitions=3).partitions == 3
    flat = tmp_path / "flat.toml"  # keys at top level work too
    flat.write_text("batch_max = 5\n")
    assert load_settings(flat).batch_max == 5


def _config_error(**kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kw)  # type: ignore[arg-type]
    return str(info.value)


def test_error_names_the_environment_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CHURNWATCH_PARTITIONS", "lots")
    clean_env.setenv("CHURNWATCH_BROKER", "http://127.0.0.1:9092")
    message = _config_error()
    assert "environment variable CHURNWATCH_PARTITIONS" in message
    assert "environment variable CHURNWATCH_BROKER" in message and "kafka://HOST:PORT" in message
    assert message.count("Fix:") == 2


def test_error_names_the_toml_file_and_key(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "cw.toml"
    cfg.write_text("[churnwatch]\nredis_url = 'mysql://db'\nlateness_days = 45\n")
    message = _config_error(config_file=cfg)
    assert f"{cfg}: key 'redis_url'" in message and "redis://HOST:PORT/DB" in message
    assert f"{cfg}: key 'lateness_days'" in message and "less than or equal to 30" in message


def test_error_names_an_unknown_key_and_lists_known_ones(clean_env: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    cfg = tmp_path / "cw.toml"
    cfg.write_text("[churnwatch]\nredis_ulr = 'redis://x'\n")
    message = _config_error(config_file=cfg)
    assert f"{cfg}: key 'redis_ulr': unknown setting" in message
    assert "known keys:" in message and "redis_url" in message


def test_error_names_the_override_flag(clean_env: pytest.MonkeyPatch) -> None:
    message = _config_error(metrics_port=70000, log_level="loud")
    assert "--metrics-port" in message and "--log-level" in message
    assert "debug, info, warning or error" in message


def test_bad_config_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("CHURNWATCH_CONFIG", str(tmp_path / "missing.toml"))
    message = _config_error()
    assert "missing.toml: cannot read config file" in message and "CHURNWATCH_CONFIG" in message
    broken = tmp_path / "broken.toml"
    broken.write_text("[churnwatch]\npartitions = \n")
    message = _config_error(config_file=broken)
    assert f"{broken}: not valid TOML" in message and "line 2" in message


def test_playbook_segments_must_exist_in_the_ruleset() -> None:
    from alerting.playbook import load_playbook, parse_playbook
    from churnwatch.core.errors import RulesError
    from rules.ruleset import load_ruleset

    book = parse_playbook('[[actions]]\nid = "a"\nteam = "t"\nsegments = ["silnet"]\n', "pb.toml")
    with pytest.raises(RulesError, match=r"pb.toml: actions\[0\].segments: unknown segment 'silnet'"):
        book.check_segments(load_ruleset().segment_names)
    load_playbook().check_segments(load_ruleset().segment_names)  # the shipped pair agrees


def test_unknown_environment_variable_is_refused(monkeypatch) -> None:
    from churnwatch.core.errors import ConfigError
    from churnwatch.infra.settings_load import load_settings

    monkeypatch.setenv("CHURNWATCH_REDIS_ULR", "redis://x")
    with pytest.raises(ConfigError, match="CHURNWATCH_REDIS_ULR"):
        load_settings()


def test_vectorised_scores_equal_rivers_per_row_scores() -> None:
    import numpy as np

    from features.schema import FEATURES
    from online_models.model import ChurnModel, model_input

    rng = np.random.default_rng(3)
    model = ChurnModel()
    rows = rng.normal(10, 5, size=(400, len(FEATURES)))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[:, 0] = 7.0  # a constant feature: zero variance scales to 0, as in River
    attrs = [{"contract": float(rng.normal()), "fiber": 1.0} if i % 3 else {} for i in range(400)]
    untrained = model.score_matrix(rows, attrs)
    assert np.array_equal(untrained, np.full(400, 0.5))
    for i in range(250):
        model.learn(model_input(rows[i], attrs[i]), bool(rng.random() < 0.3))
    expected = model.score([model_input(r, a) for r, a in zip(rows, attrs)])
    assert np.allclose(model.score_matrix(rows, attrs), expected, rtol=0, atol=1e-12)
    assert len(set(np.round(expected, 6))) > 100  # a trained model: scores really differ
