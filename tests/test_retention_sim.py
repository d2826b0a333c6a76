"""Calibration: the ledger's 95 % intervals cover the simulator's true effects.

Pure Python, no Kafka: the simulator's alerts (churnwatch.dev.treatment), the real holdout,
the ledger's cells (alerting.effect.alert_cells) and intervals (by_action_segment); each
treated alert gets one of its alternatives at random, as during exploration."""

from __future__ import annotations

import random

from alerting.effect import alert_cells, by_action_segment
from alerting.holdout import Holdout
from churnwatch.dev.treatment import (
    ALTERNATIVES,
    EFFECT,
    TreatmentWorld,
    cell_effect,
    churn_probability,
    true_effect,
)

SEEDS = range(101, 121)  # 20 seeds x 7 action x segment cells


def _ledger(seed: int, days: int = 120, per_day: int = 60) -> dict[str, int]:
    world, holdout, pick = TreatmentWorld(seed), Holdout(0.05), random.Random(seed)
    counts: dict[str, int] = {}
    for alerts in world.alerts(days, per_day):
        for a in alerts:
            held = holdout.holds(a.subscriber_id)
            chosen = [] if held else [pick.choice(a.alternatives)]
            alert = {"segment": a.segment, "holdout": held, "rules": [],
                     "reasons": [{"kind": "indicator", "indicator": a.reason}]
                     if a.reason != "model" else [],
                     "actions": [{"id": x} for x in chosen],
                     "suppressed": [{"id": x, "reason": "holdout"} for x in a.alternatives]
                     if held else []}
            retained = world.retained(a.alert_id, a.segment, a.reason, chosen)
            for cell in alert_cells(alert)[1]:
                for stat, inc in (("c", 1), ("n", 1), ("k", int(retained))):
                    counts[f"{cell}|{stat}"] = counts.get(f"{cell}|{stat}", 0) + inc
    return counts


def test_the_world_has_a_backfiring_action_and_effects_by_reason() -> None:
    assert [k for k, v in EFFECT.items() if v < 0] == [("sales_follow_up", "regular")]
    assert true_effect("personal_offer", "regular", "spend_decline") > \
        true_effect("personal_offer", "regular", "complaints")
    assert churn_probability("regular", "model", ["sales_follow_up"]) > \
        churn_probability("regular", "model", [])
    world = TreatmentWorld(3)
    assert world.respond({"alert_id": "x", "subscriber_id": "+1", "ts": 0, "segment": "young",
                          "actions": [], "holdout": True, "reasons": []}, 30) == \
        TreatmentWorld(3).respond({"alert_id": "x", "subscriber_id": "+1", "ts": 0,
                                   "segment": "young", "actions": [], "holdout": True,
                                   "reasons": []}, 30)


def test_intervals_cover_the_true_effects_in_at_least_90_percent_of_cells() -> None:
    covered = total = 0
    misses = []
    for seed in SEEDS:
        for row in by_action_segment(_ledger(seed)):
            if row.action not in ALTERNATIVES[row.segment]:
                continue
            assert row.low is not None and row.high is not None
            truth = cell_effect(row.action, row.segment)
            total += 1
            if row.low <= truth <= row.high:
                covered += 1
            else:
                misses.append((seed, row.action, row.segment, truth, row.low, row.high))
    assert total == len(SEEDS) * 7
    assert covered / total >= 0.90, misses
