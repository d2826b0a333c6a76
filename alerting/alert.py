"""Alert and score records (docs/contract.md §4) and their deterministic identifiers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec


class Action(msgspec.Struct, frozen=True):
    """A retention action chosen by the playbook, owned by one team."""

    id: str
    team: str
    deadline_hours: float
    params: dict[str, Any] = {}
    description: str = ""
    channel: str = "internal"  # call, message, visit (contacts the subscriber) or internal
    offer: bool = False  # counts against the monthly offer cap
    not_before: int | None = None  # epoch ms: held until quiet hours end


class Alert(msgspec.Struct, frozen=True):
    """A churn alert: who, when, how bad, why, and what to do about it."""

    alert_id: str
    subscriber_id: str
    ts: int
    event_id: str
    severity: str
    score: float
    rules: list[str]
    reasons: list[dict[str, Any]]
    segment: str
    actions: list[Action]
    detected_at: int
    model_version: str
    ruleset_version: str
    ingested_at: int | None = None
    suppressed: list[dict[str, str]] = []  # actions the contact policy withheld, with why
    holdout: bool = False  # in the random holdout: actions withheld to measure their effect
    # per group of alternatives: the one chosen and why (alerting.allocate)
    allocation: list[dict[str, str]] = []


class ScoreRecord(msgspec.Struct, frozen=True, array_like=False):
    """One scored event, so alert quality can be measured from outside."""

    event_id: str
    subscriber_id: str
    ts: int
    score: float
    severity: str | None
    rules: list[str]
    segment: str


def alert_id(subscriber_id: str, event_id: str, rules: list[str]) -> str:
    """Same subscriber, triggering event and rules → same id (also computed in ledger.lua)."""
    cause = "\x1f".join([subscriber_id, event_id, *sorted(rules)])
    return hashlib.sha1(cause.encode()).hexdigest()


_encoder = msgspec.json.Encoder()


def to_json(record: msgspec.Struct) -> bytes:
    """Compact JSON for sinks and topics."""
    return _encoder.encode(record)


def alert_from_json(raw: bytes) -> Alert:
    """Parse an alert published by churnwatch."""
    return msgspec.json.decode(raw, type=Alert)


def alert_marks(alerts: Sequence[Alert]) -> dict[tuple[str, str], bool]:
    """(subscriber, event) → held out, for alerts that acted on a subscriber (or would have,
    but for the holdout). Alerts whose every action was withheld (contact policy, storm
    hold) touched nobody and do not count."""
    marks: dict[tuple[str, str], bool] = {}
    for alert in alerts:
        if alert.holdout or alert.actions:
            marks[(alert.subscriber_id, alert.event_id)] = alert.holdout
    return marks
