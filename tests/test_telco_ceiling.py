"""The arrived-labels oracle of ``benchmarks.telco_ceiling`` scores a batch's profiles with a
model fitted on the labels of earlier batches only: none of the batch's own, none later."""

from __future__ import annotations

import numpy as np

from benchmarks.telco_candidates import replay_scores
from benchmarks.telco_ceiling import ArrivedLabels
from churnwatch.core.events import Event

BATCH = 4


def _feed() -> tuple[list[Event], dict[str, bool], dict[str, dict[str, float]]]:
    """Twelve subscribers, each profile followed by its label either in the same batch of
    ``BATCH`` events or later; subscriber i's single input is i."""
    order = ["p0", "p1", "l0", "p2",  # batch 0: s0's label arrives with its profile
             "l1", "p3", "p4", "l3",  # batch 1
             "p5", "l2", "l4", "p6",  # batch 2
             "l5", "p7", "l6", "l7",  # batch 3
             "p8", "p9", "l8", "p10",  # batch 4
             "p11", "l9", "l10", "l11"]  # batch 5
    events, labels = [], {}
    for ts, code in enumerate(order):
        i = int(code[1:])
        sid = f"s{i}"
        labels[sid] = i % 3 == 0
        kind = "profile" if code[0] == "p" else ("churn" if labels[sid] else "active")
        events.append(Event(event_id=f"{sid}-{kind}", subscriber_id=sid, type=kind, ts=ts))
    return events, labels, {f"s{i}": {"id": float(i)} for i in range(12)}


def test_the_oracle_fits_only_labels_of_earlier_batches() -> None:
    events, labels, inputs = _feed()
    fits: list[tuple[set[float], set[float]]] = []

    def memorise(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
                 ) -> np.ndarray:
        """A 'model' that knows the labels it was given: ±5 for a subscriber it learned."""
        known = {X[r, 0]: y[r] for r in train}
        fits.append(({X[r, 0] for r in train}, {X[r, 0] for r in test}))
        return np.array([0.0 if X[r, 0] not in known else (5.0 if known[X[r, 0]] else -5.0)
                         for r in test])

    _, scores, _ = replay_scores(events, labels, inputs, ArrivedLabels(memorise, ["id"]),
                                 BATCH)

    assert np.all(scores == 0.5), "a profile was scored with its own label"
    learned_before = []
    for k in range(0, len(events), BATCH):
        earlier = {float(ev.subscriber_id[1:]) for ev in events[:k]
                   if ev.type in ("churn", "active")}
        batch_profiles = {float(ev.subscriber_id[1:]) for ev in events[k:k + BATCH]
                          if ev.type == "profile"}
        if batch_profiles and any(labels[f"s{int(i)}"] for i in earlier) \
                and not all(labels[f"s{int(i)}"] for i in earlier):
            learned_before.append((earlier, batch_profiles))
    assert fits == learned_before  # every earlier label, and only those, at each batch


def test_the_oracle_scores_a_half_until_it_has_seen_both_outcomes() -> None:
    oracle = ArrivedLabels(lambda X, y, train, test: np.full(len(test), 3.0), ["id"])
    assert list(oracle.score([{"id": 1.0}])) == [0.5]
    oracle.learn({"id": 1.0}, False)
    assert list(oracle.score([{"id": 2.0}])) == [0.5]
    oracle.learn({"id": 2.0}, True)
    assert oracle.score([{"id": 3.0}])[0] == 1.0 / (1.0 + np.exp(-3.0))
