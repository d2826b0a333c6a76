"""The incrementality ledger: what each retention action adds over doing nothing.

Every alert that acted on a subscriber (or would have, but for the random holdout,
``alerting.holdout``) is an observation in the cells of its actions: *treated* (the action
was sent) or *control* (the subscriber is held out, and the playbook chose the action for
them). After the alert, the outcome is **retained** unless the subscriber churns within the
effect window (``EffectConfig.window_days``); an ``active`` renewal in the window decides it
as retained. An alert is counted once its window has closed (plus a grace for late events):
counting churners as they leave would count a recent alert's churners before its stayers and
bias every rate down. Because the holdout is a hash of the subscriber id, independent of risk,
segment and reasons, the difference of the retained rates treated − control is the action's
incremental effect in that cell (the cell's population: alerts for which the playbook chose
the action).

Cells are (action, segment, reason), reason = the alert's first indicator (``model`` when
only the model fired), and (action, segment, rule) for the rule view. The counts are kept in
Redis (``alerting.effect_store``) as fields ``<dim>|<arm>|<action>|<segment>|<x>|<stat>``:
dim ``s`` (x = reason) or ``r`` (x = rule), arm ``t`` or ``h``, stat ``c`` (alerts
registered), ``n`` (outcomes settled) and ``k`` (retained among them).

The difference gets a 95 % interval by Newcombe's hybrid score method (method 10 of
Newcombe, Stat. Med. 1998; Wilson score intervals of each rate, combined), which keeps its
coverage for small counts and rates near 0 or 1 where the Wald interval does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Z95 = 1.959963984540054
ARMS = ("t", "h")  # treated, held out (control)
DIMS = ("s", "r", "b")  # by segment and reason, by segment and rule, by segment and model band
# the report's --by names of the dimensions
BY = {"reason": "s", "rule": "r", "band": "b"}
BANDS = 5  # model score bands: [0, 0.2), [0.2, 0.4), … [0.8, 1]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (n > 0)."""
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int,
             z: float = Z95) -> tuple[float, float, float] | None:
    """p1 − p2 with its hybrid score interval (estimate, low, high); None without data."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), \
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def primary_reason(reasons: Sequence[Mapping[str, Any]]) -> str:
    """An alert's reason for the ledger: its first indicator, else ``model``."""
    for reason in reasons:
        if reason.get("kind") == "indicator" and reason.get("indicator"):
            return str(reason["indicator"])
    return "model"


def score_band(score: float) -> str:
    """The model band of a score: ``0.0-0.2`` … ``0.8-1.0``."""
    k = min(BANDS - 1, max(0, int(float(score) * BANDS)))
    return f"{k / BANDS:.1f}-{(k + 1) / BANDS:.1f}"


def alert_cells(alert: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(arm, cell fields without the stat) an alert (as JSON) contributes to; no cells for an
    alert that acted on nobody (every action withheld by the contact policy or a storm)."""
    if alert.get("holdout"):
        arm = "h"
        actions = [s["id"] for s in alert.get("suppressed", ()) if s.get("reason") == "holdout"]
    else:
        arm = "t"
        actions = [a["id"] for a in alert.get("actions", ())]
    segment, reason = alert["segment"], primary_reason(alert.get("reasons", ()))
    cells = [f"s|{arm}|{a}|{segment}|{reason}" for a in actions]
    cells += [f"r|{arm}|{a}|{segment}|{rule}" for a in actions for rule in alert.get("rules", ())]
    band = score_band(alert.get("score", 0.0))
    cells += [f"b|{arm}|{a}|{segment}|{band}" for a in actions]
    return arm, cells


@dataclass(frozen=True)
class Economics:
    """Cost of one contact by action (and segment), value of a retained subscriber by
    segment (the playbook's ``cost``, ``cost_by_segment`` and ``[value]``)."""

    value: Mapping[str, float] = field(default_factory=dict)  # segment → value
    default_value: float = 0.0
    cost: Mapping[str, float] = field(default_factory=dict)  # action → cost of a contact
    cost_by_segment: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def value_of(self, segment: str) -> float:
        return self.value.get(segment, self.default_value)

    def cost_of(self, action: str, segment: str) -> float:
        return self.cost_by_segment.get((action, segment), self.cost.get(action, 0.0))


@dataclass(frozen=True)
class EffectRow:
    """One cell of the ledger."""

    dim: str  # "s": x is the reason; "r": x is a rule
    action: str
    segment: str
    x: str
    contacts: int  # treated alerts registered (sent), settled or not
    treated: int  # treated outcomes settled
    treated_retained: int
    control: int  # held-out outcomes settled
    control_retained: int
    difference: float | None  # treated − control retained rate
    low: float | None  # 95 % interval of the difference
    high: float | None
    offer_cost: float  # contacts × cost per contact
    retained_value: float | None  # incremental retained subscribers × value, over the contacts

    @property
    def treated_rate(self) -> float | None:
        return self.treated_retained / self.treated if self.treated else None

    @property
    def control_rate(self) -> float | None:
        return self.control_retained / self.control if self.control else None

    @property
    def incremental_retained(self) -> float | None:
        """Estimated subscribers retained by the contacts made (difference × contacts)."""
        return None if self.difference is None else self.difference * self.contacts

    def as_dict(self) -> dict[str, Any]:
        out = {"dim": "reason" if self.dim == "s" else "rule", "action": self.action,
               "segment": self.segment,
               ("reason" if self.dim == "s" else "rule"): self.x, "contacts": self.contacts,
               "treated": self.treated, "treated_retained": self.treated_retained,
               "control": self.control, "control_retained": self.control_retained,
               "treated_rate": self.treated_rate, "control_rate": self.control_rate,
               "difference": self.difference, "low": self.low, "high": self.high,
               "incremental_retained": self.incremental_retained,
               "offer_cost": self.offer_cost, "retained_value": self.retained_value}
        return out


def parse_counts(raw: Mapping[bytes | str, bytes | str | int]) -> dict[str, int]:
    """The Redis hash as {field: count}."""
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def rows(counts: Mapping[str, int], economics: Economics = Economics(),
         dims: Iterable[str] = DIMS) -> list[EffectRow]:
    """Every cell with data, sorted by dim, action, segment, x."""
    cells: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for name, count in counts.items():
        dim, arm, action, segment, x, stat = name.split("|")
        cells.setdefault((dim, action, segment, x), {})[arm + stat] = count
    wanted = set(dims)
    out = []
    for (dim, action, segment, x), c in sorted(cells.items()):
        if dim not in wanted:
            continue
        nt, kt, nh, kh = c.get("tn", 0), c.get("tk", 0), c.get("hn", 0), c.get("hk", 0)
        contacts = c.get("tc", 0)
        diff = newcombe(kt, nt, kh, nh)
        cost = contacts * economics.cost_of(action, segment)
        value = None if diff is None else diff[0] * contacts * economics.value_of(segment)
        out.append(EffectRow(dim, action, segment, x, contacts, nt, kt, nh, kh,
                             *(diff or (None, None, None)), cost, value))
    return out


def by_action_segment(counts: Mapping[str, int],
                      economics: Economics = Economics()) -> list[EffectRow]:
    """The reason cells summed per (action, segment) (x = ``*``): what allocation and the
    sleeping-dog check use."""
    summed: dict[str, int] = {}
    for name, count in counts.items():
        dim, arm, action, segment, _, stat = name.split("|")
        if dim == "s":
            key = f"s|{arm}|{action}|{segment}|*|{stat}"
            summed[key] = summed.get(key, 0) + count
    return rows(summed, economics, ("s",))


def report(counts: Mapping[str, int], economics: Economics = Economics(), by: str = "reason",
           window_days: float = 30.0) -> dict[str, Any]:
    """The ledger as JSON (``churnwatch effect --json``, the page's ``/api/effect``): rows by
    ``reason``, ``rule``, model score ``band`` or ``segment`` (action × segment), and the
    backfiring cells."""
    if by not in ("segment", *BY):
        raise ValueError("by must be reason, rule, band or segment")
    summed = by_action_segment(counts, economics)
    cells = summed if by == "segment" else rows(counts, economics, (BY[by],))
    return {"window_days": window_days, "by": by, "rows": [r.as_dict() for r in cells],
            "backfiring": [{"action": r.action, "segment": r.segment} for r in summed
                           if r.high is not None and r.high < 0]}
