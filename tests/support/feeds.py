"""Simulated feeds shared by the tests (one per session): events, their day unit and seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from churnwatch.infra.runtime import kernel_cache

kernel_cache.configure()  # before any kernel is imported (churnwatch/infra/runtime/kernel_cache.py)



DAY = 86_400_000


@dataclass(frozen=True)
class SimulatedFeed:
    """A simulated feed (duplicates and out-of-order events on) and its offline oracle: the
    alert ids the rules must raise (``churnwatch rules test``) and every subscriber's final
    features (``features.reference``)."""

    lines: list[bytes]
    expected_ids: frozenset[str]
    features: dict[str, Any]

    def write(self, path: Path, start: int = 0, stop: int | None = None) -> Path:
        path.write_bytes(b"\n".join(self.lines[start:stop]) + b"\n")
        return path


def make_feed(subscribers: int, days: int, churn_rate: float, seed: int,
              faults: float = 0.02) -> SimulatedFeed:
    """Simulate a feed (``faults``: the duplicate and the out-of-order rates) and run its
    oracle."""
    from alerting.alert import alert_id
    from alerting.dryrun import dry_run
    from churnwatch.core.events import decode_payload
    from churnwatch.dev.simulate import SimConfig, Simulation
    from features.reference import ReferenceStore
    from rules.engine import compile_ruleset
    from rules.ruleset import load_ruleset

    sim = Simulation(SimConfig(subscribers=subscribers, days=days, churn_rate=churn_rate,
                               seed=seed, duplicate_rate=faults, out_of_order_rate=faults))
    lines = [orjson.dumps(e) for e in sim.events()]
    expected = dry_run(compile_ruleset(load_ruleset()), lines)["alerts"]
    reference = ReferenceStore()
    for raw in lines:
        for ev in decode_payload(raw)[0]:
            reference.apply(ev)
    return SimulatedFeed(lines, frozenset(alert_id(a["subscriber_id"], a["event_id"], a["rules"])
                                          for a in expected),
                         {sid: reference.features(sid) for sid in reference.subscribers})
