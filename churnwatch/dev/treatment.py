"""What retention actions truly do in the simulator: treatment effects per action × segment ×
reason, so the incrementality ledger and the allocator have something real to discover
(docs/retention.md lists the table and why it looks like this).

An alerted subscriber churns within the effect window with probability
``BASE_CHURN[segment] + REASON_CHURN[reason] − Σ effect(action, segment, reason)`` over the
actions they got (none when held out), clipped to [0.02, 0.98]; effects add up. One action
backfires for one segment: ``sales_follow_up`` (a salesperson proposing a custom plan) makes
``regular`` subscribers *more* likely to leave, as plan recommendations did in Ascarza,
Iyengar and Schleicher (JMR 2016): the call reminds them to compare offers.

:class:`TreatmentWorld` draws alerts (segment, reason, the playbook's alternatives for them)
and settles each alert's outcome deterministically from the seed and the alert id, so a
policy comparison on one seed sees the same subscribers respond the same way to the same
action. :meth:`TreatmentWorld.respond` turns a published alert into the events the
subscriber then sends (``churn`` in the window, or an ``active`` renewal, or nothing), for
feeding back through a real worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnwatch.core.units import DAY_MS

SEGMENT_MIX = {"family": 0.30, "young": 0.30, "regular": 0.40}  # of the alerts
REASONS = ("complaints", "login_drop", "spend_decline", "model")
REASON_MIX = {"family": (0.35, 0.25, 0.25, 0.15), "young": (0.25, 0.40, 0.20, 0.15),
              "regular": (0.30, 0.20, 0.35, 0.15)}
BASE_CHURN = {"family": 0.35, "young": 0.45, "regular": 0.40}
REASON_CHURN = {"complaints": 0.05, "login_drop": 0.05, "spend_decline": 0.0, "model": -0.10}
# the playbook's alternatives (group "save" of alerting/default_playbook.toml), in its order
ALTERNATIVES = {"family": ("personal_offer", "sales_follow_up"),
                "young": ("personal_offer", "sales_follow_up", "data_video_bundle"),
                "regular": ("personal_offer", "sales_follow_up")}
# retention gained (churn probability lost) by action × segment, and by action × reason on top
EFFECT = {("personal_offer", "family"): 0.03, ("personal_offer", "young"): 0.04,
          ("personal_offer", "regular"): 0.05,
          ("sales_follow_up", "family"): 0.12, ("sales_follow_up", "young"): 0.05,
          ("sales_follow_up", "regular"): -0.15,  # backfires
          ("data_video_bundle", "young"): 0.14}
REASON_EFFECT = {("personal_offer", "spend_decline"): 0.06,
                 ("sales_follow_up", "complaints"): 0.02,
                 ("data_video_bundle", "login_drop"): 0.04}
RENEWAL_SHARE = 0.3  # of the retained: an `active` renewal inside the window


def true_effect(action: str, segment: str, reason: str) -> float:
    """Retention gained by ``action`` for an alerted subscriber of this segment and reason."""
    return EFFECT.get((action, segment), 0.0) + REASON_EFFECT.get((action, reason), 0.0)


def cell_effect(action: str, segment: str) -> float:
    """The action's true effect in a segment, over the segment's mix of reasons (the
    ledger's action × segment cell)."""
    return float(sum(w * true_effect(action, segment, r)
                     for r, w in zip(REASONS, REASON_MIX[segment])))


def churn_probability(segment: str, reason: str, actions: Sequence[str]) -> float:
    p = BASE_CHURN[segment] + REASON_CHURN[reason] - sum(true_effect(a, segment, reason)
                                                         for a in actions)
    return min(0.98, max(0.02, p))


@dataclass(frozen=True)
class SimAlert:
    alert_id: str
    subscriber_id: str
    day: int
    segment: str
    reason: str
    alternatives: tuple[str, ...]


def _uniform(seed: int, alert_id: str, what: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x1f{alert_id}\x1f{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class TreatmentWorld:
    """Alerts and their outcomes for one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def alerts(self, days: int, per_day: int) -> Iterator[list[SimAlert]]:
        """Each day's alerts (``per_day`` on average, Poisson), one subscriber each."""
        rng = np.random.default_rng(self.seed)
        segments = list(SEGMENT_MIX)
        n = 0
        for day in range(days):
            out = []
            for _ in range(int(rng.poisson(per_day))):
                seg = segments[int(rng.choice(len(segments), p=list(SEGMENT_MIX.values())))]
                reason = REASONS[int(rng.choice(len(REASONS), p=REASON_MIX[seg]))]
                out.append(SimAlert(f"s{self.seed}-a{n}", f"+4479{self.seed % 100:02d}{n:07d}",
                                    day, seg, reason, ALTERNATIVES[seg]))
                n += 1
            yield out

    def retained(self, alert_id: str, segment: str, reason: str,
                 actions: Sequence[str]) -> bool:
        """Whether the subscriber is still there when the window closes (the same draw for
        every policy: only the churn probability differs)."""
        return _uniform(self.seed, alert_id, "churn") >= churn_probability(segment, reason,
                                                                          actions)

    def respond(self, alert: Mapping[str, Any], window_days: float) -> list[dict[str, Any]]:
        """The events a subscriber sends after a published alert: a ``churn`` at some point
        in the window, an ``active`` renewal (``RENEWAL_SHARE`` of those retained), or none."""
        reason = next((r["indicator"] for r in alert.get("reasons", ())
                       if r.get("kind") == "indicator"), "model")
        reason = reason if reason in REASONS else "model"
        segment = alert["segment"] if alert["segment"] in BASE_CHURN else "regular"
        actions = [] if alert.get("holdout") else [a["id"] for a in alert.get("actions", ())]
        aid, sid = alert["alert_id"], alert["subscriber_id"]
        at = alert["ts"] + int((1 + _uniform(self.seed, aid, "when") * (window_days - 2)) * DAY_MS)
        if not self.retained(aid, segment, reason, actions):
            return [{"event_id": f"sim-churn-{aid}", "subscriber_id": sid, "type": "churn",
                     "ts": at, "reason": reason}]
        if _uniform(self.seed, aid, "renews") < RENEWAL_SHARE:
            return [{"event_id": f"sim-active-{aid}", "subscriber_id": sid, "type": "active",
                     "ts": at}]
        return []
