"""The playbook's effect, allocation and value settings are validated when it loads, with
errors naming the file, the key and the fix."""

from __future__ import annotations

import pytest

from alerting.playbook import parse_playbook
from churnwatch.core.errors import ChurnwatchError, RulesError

ACTION = '[[actions]]\nid = "offer"\nteam = "t"\n'


@pytest.mark.parametrize(("text", "key", "fix"), [
    ('[allocation]\nstrategy = "greedy"\n' + ACTION, "allocation.strategy", "thompson, fixed"),
    ('[allocation]\nmin_outcomes = -1\n' + ACTION, "allocation.min_outcomes", "min_outcomes ="),
    ('[allocation]\nobjective = "margin"\n' + ACTION, "allocation.objective", "[value]"),
    ('[allocation]\nbandit = 1\n' + ACTION, "allocation.bandit", "use only"),
    ('[effect]\nwindow_days = 0\n' + ACTION, "effect.window_days", "window_days = 30"),
    ('[value]\nyoung = "a lot"\n' + ACTION, "value.young", "young = 30"),
    (ACTION + 'cost = -3\n', "actions[0].cost", "cost = 30"),
    (ACTION + 'cost_by_segment = 4\n', "actions[0].cost_by_segment", "key = value"),
    (ACTION + 'group = ""\n', "actions[0].group", 'group = "save"'),
])
def test_bad_settings_name_file_key_and_fix(text: str, key: str, fix: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_playbook(text, "pb.toml")
    assert isinstance(info.value, ChurnwatchError)
    message = str(info.value)
    assert message.startswith(f"pb.toml: {key}:") and "Fix:" in message and fix in message


def test_unknown_segments_in_values_and_costs_fail_against_the_ruleset() -> None:
    known = ("young", "regular")
    good = parse_playbook('[value]\ndefault = 100\nyoung = 50\n' + ACTION
                          + 'group = "save"\ncost = 5\ncost_by_segment = { regular = 2 }\n')
    good.check_segments(known)
    econ = good.effect.economics
    assert (econ.value_of("young"), econ.value_of("regular")) == (50.0, 100.0)
    assert (econ.cost_of("offer", "regular"), econ.cost_of("offer", "young")) == (2.0, 5.0)
    assert good.groups == {"offer": "save"}
    for text, key in (('[value]\nyuong = 5\n' + ACTION, "value.yuong"),
                      (ACTION + 'cost_by_segment = { famly = 1 }\n', "offer.cost_by_segment.famly")):
        with pytest.raises(RulesError, match=f"<string>: {key}: unknown segment"):
            parse_playbook(text).check_segments(known)
