"""From feature rows to alerts: rules, model score, cooldowns, playbook. Pure and synchronous.

The same decision serves the event path (one row per applied event) and the silence sweep
(one row per quiet subscriber, at the watermark).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter, itemgetter

import msgspec
import numpy as np

from alerting.alert import Alert, ScoreRecord, alert_id, to_json
from alerting.allocate import Allocator
from alerting.cooldown import decide
from alerting.holdout import Holdout
from alerting.playbook import Playbook
from alerting.policy import ContactPolicy, apply_policy
from alerting.risk import RiskPoints
from alerting.storm import StormGuard, storm_alert
from churnwatch.core.events import Event
from churnwatch.core.severity import SEVERITIES, SEVERITY_RANK
from churnwatch.core.units import DAY_MS, HOUR_MS
from online_models.model import ChurnModel, model_input
from rules.engine import CompiledRuleset, explain, with_model_inputs


@dataclass
class Decision:
    """What a set of rows decided: alerts to send, ledger changes to commit, scores."""

    alerts: list[Alert]
    payloads: list[bytes]
    entries: dict[str, dict[str, bytes]]
    pending: dict[str, list[tuple[str, bytes]]]
    scores: list[ScoreRecord]
    rule_hits: dict[str, int]
    held: list[tuple[str, bytes]] = field(default_factory=list)  # (rule, alert with actions)
    storm_counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    risk: Mapping[str, Sequence[tuple[int, float, str]]] = field(default_factory=dict)
    # subscriber → (event time, score, severity or "") of its last row of each event-time
    # day, by day (alerting.risk.RiskPoints)


@dataclass(frozen=True)
class Deciders:
    """Everything that decides: the ruleset, the model, the playbook and the contact policy
    (with the do-not-contact set it applies)."""

    rules: CompiledRuleset
    model: ChurnModel
    playbook: Playbook
    policy: ContactPolicy = ContactPolicy()
    do_not_contact: frozenset[str] = frozenset()
    storm: StormGuard = field(default_factory=StormGuard)
    holdout: Holdout = Holdout()
    allocator: Allocator = field(default_factory=Allocator)  # alternatives, sleeping dogs


def decide_alerts(
    deciders: Deciders,
    triggers: Sequence[Event],
    matrix: np.ndarray,
    attrs: Sequence[dict[str, float]],
    ledgers: dict[str, dict[str, bytes]],
    ingested: Sequence[int | None],
    now_ms: int,
    wants_scores: bool,
) -> Decision:
    """Decide alerts for ``triggers[j]`` whose features are ``matrix[j]``, in order.

    ``ledgers`` are the subscribers' cooldown entries before these rows; they are not modified.
    """
    rules, model, playbook = deciders.rules, deciders.model, deciders.playbook
    ruleset = rules.ruleset
    scores = model.score_matrix(matrix, attrs)
    inputs = with_model_inputs(matrix, np.column_stack(
        [scores, np.full_like(scores, model.label_counts()[0]),
         np.full_like(scores, model.label_counts()[1])]))
    evaluation = rules.evaluate(inputs)
    rule_ids = [r.id for r in ruleset.rules]
    acting = np.array([not r.shadow for r in ruleset.rules], dtype=np.bool_)
    entries = {sid: dict(e) for sid, e in ledgers.items()}
    out = Decision([], [], {}, {}, [], dict(zip(rule_ids, evaluation.hits.sum(axis=0).tolist())))
    out.risk = _risk(triggers, scores, evaluation.severity)
    names, ranks, segments = ruleset.segment_names, evaluation.severity.tolist(), \
        evaluation.segment.tolist()
    # without score records, only rows some rule hit need a look
    for j in range(len(triggers)) if wants_scores else np.flatnonzero(evaluation.severity).tolist():
        ev = triggers[j]
        hits = evaluation.hits[j]
        rank = ranks[j]
        segment = names[segments[j]]
        if wants_scores:
            out.scores.append(ScoreRecord(
                ev.event_id, ev.subscriber_id, ev.ts, float(scores[j]),
                SEVERITIES[rank - 1] if rank else None,
                [rule_ids[k] for k in np.flatnonzero(hits & acting)], segment))
        if not rank:
            continue
        candidates = [(r.id, SEVERITY_RANK[r.severity], int(r.cooldown_days * DAY_MS))
                      for k, r in enumerate(ruleset.rules) if hits[k] and not r.shadow]
        sub_entries = entries.setdefault(ev.subscriber_id, {})
        passed = decide(sub_entries, candidates, ev.ts, ev.event_id)
        if not passed:
            continue
        for rule in passed:
            out.entries.setdefault(ev.subscriber_id, {})[rule] = sub_entries[rule]
        severity = SEVERITIES[max(SEVERITY_RANK[ruleset.rules[rule_ids.index(r)].severity]
                                  for r in passed) - 1]
        row = matrix[j]
        reasons = [{"kind": "indicator", **r}
                   for r in explain(ruleset, inputs[j], evaluation.indicators[j])]
        reasons += [{"kind": "model", **c}
                    for c in model.explain(model_input(row, attrs[j]))]
        chosen = playbook.choose(severity, segment, row)
        alert = Alert(
            alert_id=alert_id(ev.subscriber_id, ev.event_id, passed),
            subscriber_id=ev.subscriber_id, ts=ev.ts, event_id=ev.event_id, severity=severity,
            score=round(float(scores[j]), 6), rules=sorted(passed), reasons=reasons,
            segment=segment, actions=chosen, detected_at=now_ms, model_version=model.version,
            ruleset_version=ruleset.version, ingested_at=ingested[j])
        if deciders.holdout.holds(ev.subscriber_id):  # no action, no storm budget used
            alert = msgspec.structs.replace(
                alert, actions=[], holdout=True,
                suppressed=[{"id": a.id, "reason": "holdout"} for a in chosen])
            payload = to_json(alert)
            out.alerts.append(alert)
            out.payloads.append(payload)
            out.pending.setdefault(ev.subscriber_id, []).append((ev.event_id, payload))
            continue
        allocated = deciders.allocator.allocate(alert.alert_id, segment, chosen)
        chosen = allocated.actions
        alert = msgspec.structs.replace(alert, actions=chosen, allocation=allocated.choices)
        storming = deciders.storm.over(alert.rules, ev.ts, out.storm_counts)
        for rule in storming:
            if deciders.storm.counts[(rule, ev.ts // HOUR_MS)] + out.storm_counts[
                    (rule, ev.ts // HOUR_MS)] == deciders.storm.max_per_hour:
                notice = storm_alert(rule, ev.ts, deciders.storm.max_per_hour, now_ms,
                                     ruleset.version, model.version)
                out.alerts.append(notice)
                out.payloads.append(to_json(notice))
        out.storm_counts.update((rule, ev.ts // HOUR_MS) for rule in alert.rules)
        if storming:
            out.held.append((storming[0], to_json(alert)))
            alert = msgspec.structs.replace(
                alert, actions=[], suppressed=allocated.suppressed + [
                    {"id": a.id, "reason": "storm hold"} for a in chosen])
        else:
            actions, withheld, counters = apply_policy(
                deciders.policy, chosen, sub_entries, ev.subscriber_id, _month(ev.ts), now_ms,
                deciders.do_not_contact)
            out.entries.setdefault(ev.subscriber_id, {}).update(counters)
            alert = msgspec.structs.replace(alert, actions=actions,
                                            suppressed=allocated.suppressed + withheld)
        payload = to_json(alert)
        out.alerts.append(alert)
        out.payloads.append(payload)
        out.pending.setdefault(ev.subscriber_id, []).append((ev.event_id, payload))
    return out


def _risk(triggers: Sequence[Event], scores: np.ndarray, severity: np.ndarray) -> RiskPoints:
    """Each subscriber's last row of each event-time day, days in order of first appearance
    (event order): (event time, score, severity or ""). A measured hot path: kept as
    columns (:class:`RiskPoints`), not a tuple per point."""
    n = len(triggers)
    sids = list(map(_SUBSCRIBER, triggers))
    ts = np.fromiter(map(_TS, triggers), np.int64, n)
    last = dict(zip(zip(sids, (ts // DAY_MS).tolist()), range(n)))  # the last row wins
    rows = np.fromiter(last.values(), np.int64, len(last))
    kept = list(map(_FIRST, last))
    order = list(dict.fromkeys(kept))  # subscribers in order of first appearance
    code = np.fromiter(map(dict(zip(order, range(len(order)))).__getitem__, kept), np.int64,
                       len(kept))
    rows = rows[np.argsort(code, kind="stable")]  # by subscriber, days in order of appearance
    return RiskPoints(order, np.cumsum(np.bincount(code, minlength=len(order))), ts[rows],
                      scores[rows], severity[rows], ("",) + SEVERITIES)


_SUBSCRIBER, _TS, _FIRST = attrgetter("subscriber_id"), attrgetter("ts"), itemgetter(0)


def _month(ts_ms: int) -> str:
    """UTC calendar month of an event time, as YYYYMM (the contact caps' period)."""
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y%m")
