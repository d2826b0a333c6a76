"""`churnwatch rules test`: what a ruleset would raise on an event file, without acting.

Features come from the reference computation (features/reference.py), so no Redis or Kafka
is needed; cooldowns are applied in memory exactly as the worker applies them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from alerting.cooldown import decide
from churnwatch.core.severity import SEVERITIES, SEVERITY_RANK
from churnwatch.core.units import DAY_MS
from features.reference import ReferenceStore, replay_lines
from rules.engine import CompiledRuleset


def dry_run(compiled: CompiledRuleset, lines: Iterable[bytes],
            lateness_ms: int = 7 * DAY_MS) -> dict[str, Any]:
    """Alerts (after cooldown) and hit counts per rule (shadow included) for an event stream."""
    ruleset = compiled.ruleset
    store = ReferenceStore(lateness_ms)
    entries: dict[str, dict[str, bytes]] = {}
    hits: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    alerts = []
    for n, ev, row in replay_lines(lines, store, outcomes):
        ev_result = compiled.evaluate(row.reshape(1, -1))
        fired = [r for k, r in enumerate(ruleset.rules) if ev_result.hits[0, k]]
        hits.update(r.id for r in fired)
        acting = [(r.id, SEVERITY_RANK[r.severity], int(r.cooldown_days * DAY_MS))
                  for r in fired if not r.shadow]
        passed = decide(entries.setdefault(ev.subscriber_id, {}), acting, ev.ts, ev.event_id)
        if passed:
            rank = max(SEVERITY_RANK[ruleset.rules[[r.id for r in ruleset.rules].index(p)]
                                     .severity] for p in passed)
            alerts.append({
                "line": n, "subscriber_id": ev.subscriber_id, "event_id": ev.event_id,
                "ts": ev.ts, "severity": SEVERITIES[rank - 1], "rules": sorted(passed),
                "indicators": [i.name for k, i in enumerate(ruleset.indicators)
                               if ev_result.indicators[0, k]],
                "segment": ruleset.segment_names[ev_result.segment[0]],
            })
    return {"ruleset_version": ruleset.version, "events": dict(outcomes),
            "rule_hits": dict(hits), "alerts": alerts}
