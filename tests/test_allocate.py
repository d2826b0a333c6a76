"""Allocation among the playbook's alternatives: deterministic per alert id, exploring each
alternative in playbook order to its minimum first, leaving the holdout exactly as it is, and
dropping actions that backfire in a segment (no sleeping dogs)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from alerting.alert import Action
from alerting.allocate import Allocator, EffectSnapshot
from alerting.decide import Deciders, decide_alerts
from alerting.effect import EffectRow, newcombe
from alerting.effect_config import EffectConfig
from alerting.holdout import Holdout
from alerting.playbook import load_playbook
from churnwatch.core.events import Event
from features.schema import FEATURES, INDEX
from online_models.model import ChurnModel
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset

OFFER = Action("offer", "t", 24.0, channel="message")
CALL = Action("call", "t", 24.0, channel="call")
FIX = Action("fix", "t", 24.0)
GROUPS = {"offer": "save", "call": "save"}


def _row(action: str, segment: str, contacts: int, nt: int, kt: int, nh: int,
         kh: int) -> EffectRow:
    d, lo, hi = newcombe(kt, nt, kh, nh) or (None, None, None)
    return EffectRow("s", action, segment, "*", contacts, nt, kt, nh, kh, d, lo, hi, 0.0, None)


def _allocator(rows: list[EffectRow], **config: object) -> Allocator:
    return Allocator(EffectConfig(**config), GROUPS, EffectSnapshot.of(rows))  # type: ignore[arg-type]


def test_choice_is_deterministic_per_alert_id_and_varies_across_ids() -> None:
    close = [_row("offer", "young", 200, 200, 130, 100, 60),
             _row("call", "young", 200, 200, 128, 100, 60)]
    alloc = _allocator(close, min_outcomes=50)
    picks = [alloc.allocate(f"alert-{i}", "young", [OFFER, CALL, FIX]) for i in range(400)]
    again = [_allocator(close, min_outcomes=50).allocate(f"alert-{i}", "young",
                                                         [OFFER, CALL, FIX])
             for i in range(400)]
    assert [p.actions for p in picks] == [p.actions for p in again]
    assert [p.choices for p in picks] == [p.choices for p in again]
    chosen = Counter(p.choices[0]["chosen"] for p in picks)
    assert set(chosen) == {"offer", "call"}  # close posteriors: both get alerts
    assert all(p.actions[-1] == FIX and len(p.actions) == 2 for p in picks)  # one per group
    assert all(p.choices[0]["reason"].startswith("thompson") for p in picks)


def test_sampling_favours_the_arm_with_the_larger_incremental_retention() -> None:
    rows = [_row("offer", "young", 600, 600, 330, 300, 150),  # +5 pts
            _row("call", "young", 600, 600, 420, 300, 150)]  # +20 pts
    alloc = _allocator(rows, min_outcomes=50)
    chosen = Counter(alloc.allocate(f"a{i}", "young", [OFFER, CALL]).choices[0]["chosen"]
                     for i in range(500))
    assert chosen["call"] > 0.95 * 500


def test_minimum_exploration_goes_in_playbook_order_before_sampling() -> None:
    rows = [_row("offer", "young", 30, 0, 0, 0, 0), _row("call", "young", 500, 500, 400, 60, 20)]
    picks = {_allocator(rows, min_outcomes=100).allocate(f"a{i}", "young", [OFFER, CALL])
             .choices[0]["chosen"] for i in range(200)}
    assert picks == {"offer"}  # below its minimum: every alert, although call looks better
    rows[0] = _row("offer", "young", 100, 0, 0, 0, 0)
    rows[1] = _row("call", "young", 20, 0, 0, 0, 0)
    choice = _allocator(rows, min_outcomes=100).allocate("a1", "young", [OFFER, CALL]).choices[0]
    assert choice["chosen"] == "call" and "20 of 100" in choice["reason"]
    fixed = _allocator(rows, strategy="fixed").allocate("a1", "young", [CALL, OFFER]).choices[0]
    assert fixed["chosen"] == "call" and fixed["reason"].startswith("fixed")


def test_backfiring_action_is_suppressed_only_in_its_segment() -> None:
    rows = [_row("call", "regular", 300, 300, 120, 200, 130),  # -25 pts, interval below 0
            _row("offer", "regular", 300, 300, 200, 200, 130)]
    alloc = _allocator(rows, min_outcomes=10)
    out = alloc.allocate("a1", "regular", [OFFER, CALL, FIX])
    assert [a.id for a in out.actions] == ["offer", "fix"]
    assert out.suppressed[0]["id"] == "call" and "backfires in regular" in \
        out.suppressed[0]["reason"]
    assert out.choices[0]["reason"] == "only alternative"
    assert not _allocator(rows, min_outcomes=10).allocate("a1", "young", [CALL]).suppressed
    off = _allocator(rows, min_outcomes=10, suppress_backfiring=False)
    assert not off.allocate("a1", "regular", [CALL]).suppressed


RULES = compile_ruleset(load_ruleset())
T = 1_778_400_000_000


def _decide(allocator: Allocator, n: int, holdout: Holdout):  # type: ignore[no-untyped-def]
    rows = np.zeros((n, len(FEATURES)))
    rows[:, INDEX["complaints_30d"]] = 2  # complaints + login drop: seed_high_risk (high)
    rows[:, INDEX["logins_prev28"]] = 20
    rows[:, INDEX["recency_days"]] = 5  # segment regular
    triggers = [Event(event_id=f"e{k}", subscriber_id=f"+4477009{k:05d}", type="complaint",
                      ts=T + k * 1000, category="service") for k in range(n)]
    deciders = Deciders(RULES, ChurnModel(), load_playbook(), holdout=holdout,
                        allocator=allocator)
    return decide_alerts(deciders, triggers, rows, [{}] * n, {}, [None] * n, T, False).alerts


@pytest.mark.parametrize("strategy", ["thompson", "fixed"])
def test_holdout_share_is_exactly_the_same_with_allocation(strategy: str) -> None:
    playbook = load_playbook()
    holdout = Holdout(0.05)
    rows = [_row("personal_offer", "regular", 500, 500, 300, 40, 20),
            _row("sales_follow_up", "regular", 500, 500, 310, 40, 20)]
    alloc = Allocator(EffectConfig(strategy=strategy, min_outcomes=10), playbook.groups,
                      EffectSnapshot.of(rows))
    with_alloc = _decide(alloc, 2000, holdout)
    without = _decide(Allocator(), 2000, holdout)
    held = [a.subscriber_id for a in with_alloc if a.holdout]
    assert held == [a.subscriber_id for a in without if a.holdout]
    assert held == [a.subscriber_id for a in with_alloc if holdout.holds(a.subscriber_id)]
    assert 60 <= len(held) <= 140  # ~5 % of 2000
    for alert in with_alloc:
        ids = [a.id for a in alert.actions]
        if alert.holdout:  # the control lists every alternative it would have been given
            assert not ids and {"personal_offer", "sales_follow_up"} <= \
                {s["id"] for s in alert.suppressed}
        else:
            assert len({"personal_offer", "sales_follow_up"} & set(ids)) == 1
            assert alert.allocation[0]["group"] == "save"


def test_no_verdict_of_backfiring_on_a_handful_of_controls() -> None:
    """An interval below zero on 1 control outcome is not enough to drop an action: the cell
    needs min_control holdout outcomes first."""
    thin = [_row("sales_follow_up", "regular", 9, 9, 1, 1, 1)]  # 1 of 9 kept vs 1 of 1
    assert EffectSnapshot.of(thin).backfiring("sales_follow_up", "regular") is not None
    assert EffectSnapshot.of(thin, 30).backfiring("sales_follow_up", "regular") is None
    wide = [_row("sales_follow_up", "regular", 400, 400, 200, 40, 32)]
    assert EffectSnapshot.of(wide, 30).backfiring("sales_follow_up", "regular") is not None
