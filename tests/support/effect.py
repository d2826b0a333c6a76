"""Alerts for the incrementality-ledger and allocation tests."""

from __future__ import annotations

from alerting.alert import Action, Alert


def make_alert(alert_id: str, sid: str, ts: int, segment: str, actions: list[str],
               holdout: bool, indicator: str | None, rules: list[str],
               score: float = 0.9) -> Alert:
    """An alert with these actions (sent, or would-be ones when held out) and first reason
    ``indicator`` (None: the model only)."""
    reasons = ([{"kind": "indicator", "indicator": indicator}] if indicator else []) + [
        {"kind": "model", "feature": "recency_days"}]
    sent = [] if holdout else [Action(a, "team", 24.0, channel="message") for a in actions]
    return Alert(alert_id=alert_id, subscriber_id=sid, ts=ts, event_id=f"e-{alert_id}",
                 severity="high", score=score, rules=rules, reasons=reasons, segment=segment,
                 actions=sent, detected_at=ts, model_version="m", ruleset_version="r",
                 holdout=holdout,
                 suppressed=[{"id": a, "reason": "holdout"} for a in actions] if holdout else [])
