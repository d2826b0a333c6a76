"""Storm protection: past the hourly budget of a rule, actions are held, one storm alert is
raised, and counts carry across batches only once a batch is committed."""

from __future__ import annotations

import numpy as np

from alerting.decide import Deciders, decide_alerts
from alerting.playbook import load_playbook
from alerting.storm import HOUR_MS, StormGuard, released_copy
from churnwatch.core.events import Event
from features.schema import FEATURES, INDEX
from online_models.model import ChurnModel
from rules.engine import compile_ruleset
from rules.ruleset import load_ruleset

RULES = compile_ruleset(load_ruleset())
T = 1_778_400_000_000 // HOUR_MS * HOUR_MS  # an hour boundary


def _rows(n: int) -> np.ndarray:
    rows = np.zeros((n, len(FEATURES)))
    rows[:, INDEX["complaints_30d"]] = 2  # complaints + login drop: seed_high_risk
    rows[:, INDEX["complaints_network_30d"]] = 2
    rows[:, INDEX["logins_prev28"]] = 20
    rows[:, INDEX["recency_days"]] = 5
    return rows


def _decide(guard: StormGuard, first: int, n: int):  # type: ignore[no-untyped-def]
    triggers = [Event(event_id=f"e{k}", subscriber_id=f"+4477009{k:05d}", type="complaint",
                      ts=T + k * 60_000, category="network") for k in range(first, first + n)]
    deciders = Deciders(RULES, ChurnModel(), load_playbook(), storm=guard)
    return decide_alerts(deciders, triggers, _rows(n), [{}] * n, {}, [None] * n, T, False)


def test_budget_holds_actions_raises_one_storm_alert_and_counts_after_commit() -> None:
    guard = StormGuard(max_per_hour=2)
    first = _decide(guard, 0, 4)
    subscriber_alerts = [a for a in first.alerts if a.subscriber_id != "*"]
    storms = [a for a in first.alerts if a.subscriber_id == "*"]
    assert [bool(a.actions) for a in subscriber_alerts] == [True, True, False, False]
    assert {s["reason"] for a in subscriber_alerts[2:] for s in a.suppressed} == {"storm hold"}
    assert len(storms) == 1 and storms[0].rules == ["seed_high_risk"]
    assert storms[0].actions[0].team == "retention-ops"
    assert [rule for rule, _ in first.held] == ["seed_high_risk", "seed_high_risk"]
    assert first.storm_counts == {("seed_high_risk", T // HOUR_MS): 4}
    assert not guard.counts  # nothing counted before the batch is committed

    retry = _decide(guard, 0, 4)  # a retried (uncommitted) batch decides the same
    assert [a.alert_id for a in retry.alerts] == [a.alert_id for a in first.alerts]

    guard.commit(first.storm_counts)
    second = _decide(guard, 4, 2)  # same hour, after the commit: held, no second storm alert
    assert all(a.subscriber_id != "*" and not a.actions for a in second.alerts)
    assert len(second.held) == 2

    held = subscriber_alerts[2]
    import msgspec

    original = msgspec.json.decode(first.held[0][1])
    release = released_copy(msgspec.json.decode(first.held[0][1], type=type(held)))
    assert release.alert_id != held.alert_id and release.event_id == held.event_id
    assert [a.id for a in release.actions] == [a["id"] for a in original["actions"]]
    assert release.reasons[-1] == {"kind": "storm_release"}


def test_no_budget_means_no_storm() -> None:
    decision = _decide(StormGuard(0), 0, 50)
    assert all(a.actions for a in decision.alerts) and not decision.held
