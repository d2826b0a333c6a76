"""Which alternative an alert gets, and which actions it must not get.

Where the playbook gives an alert several actions of one ``group`` (alternatives, e.g. an
offer, a sales call, a bundle), the alert gets one of them:

* ``fixed``: the first in playbook order;
* ``thompson``: while an alternative has fewer than ``min_outcomes`` contacts in the alert's
  segment (each becomes an outcome once the effect window closes), the first such one in
  playbook order (exploration); then Thompson sampling on the measured incremental
  retention: for each alternative, draw the treated and the control retained rate from
  their Beta(1 + retained, 1 + not retained) posteriors and take the largest difference (or,
  with ``objective = "margin"``, difference × value of the segment − cost of the contact).

The draws are seeded from the alert id (and the group), so the same alert with the same
ledger snapshot always gets the same choice; a replayed batch re-sends the alert it stored.
The holdout is decided before any of this, on the subscriber id alone: allocation never
moves a subscriber in or out of it, so the control share stays exactly what
``alerting.holdout`` makes it.

No sleeping dogs: an action whose 95 % interval of incremental retention in a segment lies
wholly below zero (``alerting.effect``) is taken off that segment's alerts, listed in the
alert's ``suppressed`` with the measurement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from alerting.alert import Action
from alerting.effect import EffectRow
from alerting.effect_config import EffectConfig


@dataclass(frozen=True)
class EffectSnapshot:
    """The ledger per (action, segment) as last read (``alerting.effect.by_action_segment``)."""

    cells: Mapping[tuple[str, str], EffectRow] = field(default_factory=dict)
    min_control: int = 0  # holdout outcomes a cell needs before it can be judged backfiring

    @classmethod
    def of(cls, rows: Sequence[EffectRow], min_control: int = 0) -> EffectSnapshot:
        return cls({(r.action, r.segment): r for r in rows}, min_control)

    def backfiring(self, action: str, segment: str) -> EffectRow | None:
        """The cell if its interval's upper bound is below zero and its holdout has at least
        ``min_control`` outcomes (a verdict on a handful of controls, looked at again and
        again as outcomes arrive, would suppress good actions by chance)."""
        row = self.cells.get((action, segment))
        return row if (row is not None and row.high is not None and row.high < 0
                       and row.control >= self.min_control) else None


@dataclass(frozen=True)
class Allocated:
    """An alert's actions after allocation, what was withheld and why, and the choices."""

    actions: list[Action]
    suppressed: list[dict[str, str]]
    choices: list[dict[str, str]]


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} pts"


def seed_of(alert_id: str, group: str) -> int:
    digest = hashlib.blake2b(f"{alert_id}\x1f{group}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Allocator:
    config: EffectConfig = field(default_factory=EffectConfig)
    groups: Mapping[str, str] = field(default_factory=dict)  # action id → group
    snapshot: EffectSnapshot = field(default_factory=EffectSnapshot)

    def allocate(self, alert_id: str, segment: str, actions: Sequence[Action]) -> Allocated:
        """The alert's actions (playbook order kept) with one per group."""
        kept: list[Action] = []
        suppressed: list[dict[str, str]] = []
        for action in actions:
            bad = self.snapshot.backfiring(action.id, segment) \
                if self.config.suppress_backfiring else None
            if bad is None:
                kept.append(action)
                continue
            assert bad.difference is not None and bad.low is not None
            suppressed.append({"id": action.id, "reason": (
                f"backfires in {segment}: incremental retention {_pts(bad.difference)} "
                f"[{_pts(bad.low)}, {_pts(bad.high or 0.0)}] over {bad.treated} treated / "
                f"{bad.control} control")})
        members: dict[str, list[Action]] = {}
        for action in kept:
            group = self.groups.get(action.id)
            if group is not None:
                members.setdefault(group, []).append(action)
        choices = []
        dropped: set[str] = set()
        for group, arms in members.items():
            chosen, reason = self.choose(alert_id, group, segment, arms)
            dropped.update(a.id for a in arms if a.id != chosen.id)
            choices.append({"group": group, "chosen": chosen.id, "reason": reason,
                            "alternatives": ",".join(a.id for a in arms)})
        return Allocated([a for a in kept if a.id not in dropped], suppressed, choices)

    def choose(self, alert_id: str, group: str, segment: str,
               arms: Sequence[Action]) -> tuple[Action, str]:
        """One of ``arms`` (in playbook order) and why."""
        if len(arms) == 1:
            return arms[0], "only alternative"
        if self.config.strategy == "fixed":
            return arms[0], "fixed: first in playbook order"
        cells = [self.snapshot.cells.get((a.id, segment)) for a in arms]
        for arm, cell in zip(arms, cells):
            contacts = cell.contacts if cell is not None else 0
            if contacts < self.config.min_outcomes:
                return arm, (f"exploring in playbook order: {contacts} of "
                             f"{self.config.min_outcomes} contacts in {segment}")
        rng = np.random.default_rng(seed_of(alert_id, group))
        econ = self.config.economics
        best, best_score, best_draw = 0, -np.inf, 0.0
        for i, (arm, cell) in enumerate(zip(arms, cells)):
            assert cell is not None
            treated = rng.beta(1 + cell.treated_retained, 1 + cell.treated - cell.treated_retained)
            control = rng.beta(1 + cell.control_retained, 1 + cell.control - cell.control_retained)
            draw = float(treated - control)
            score = draw if self.config.objective == "retention" else \
                draw * econ.value_of(segment) - econ.cost_of(arm.id, segment)
            if score > best_score:
                best, best_score, best_draw = i, score, draw
        cell = cells[best]
        assert cell is not None
        measured = "no settled outcomes yet" if cell.difference is None else \
            f"measured {_pts(cell.difference)} over {cell.treated} treated / {cell.control} control"
        unit = "" if self.config.objective == "retention" else f", margin {best_score:+.2f}"
        return arms[best], f"thompson: drew {_pts(best_draw)}{unit} ({measured})"
