"""Alert and score records (docs/contract.md §4) and their deterministic identifiers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from churnwatch.core.severity import SEVERITIES

_SEVERITY = {"enum": list(SEVERITIES)}
_Reason = Annotated[dict[str, Any], msgspec.Meta(
    description="why: `kind` indicator (an indicator that held, with its inputs), model (one "
                "of the model's top features and its contribution), storm (a rule over its "
                "hourly budget) or storm_release; other members depend on the kind",
    extra_json_schema={"required": ["kind"], "properties": {"kind": {
        "type": "string", "examples": ["indicator", "model", "storm", "storm_release"]}}})]
_Suppressed = Annotated[dict[str, str], msgspec.Meta(
    description="an action withheld: its `id` and the `reason` (holdout, contact policy, "
                "storm hold, or an action that backfires in the segment)",
    extra_json_schema={"required": ["id", "reason"]})]
_Choice = Annotated[dict[str, str], msgspec.Meta(
    description="one group of alternative actions: the `group`, the action `chosen`, the "
                "comma-separated `alternatives` and the `reason`",
    extra_json_schema={"required": ["group", "chosen", "alternatives", "reason"]})]
_EpochMs = Annotated[int, msgspec.Meta(description="epoch milliseconds (UTC)")]


class Action(msgspec.Struct, frozen=True):
    """A retention action chosen by the playbook, owned by one team."""

    id: str
    team: str
    deadline_hours: float
    params: dict[str, Any] = {}
    description: str = ""
    # call, message, visit (contacts the subscriber) or internal
    channel: Annotated[str, msgspec.Meta(
        description="call, message, visit (contacts the subscriber) or internal")] = "internal"
    offer: Annotated[bool, msgspec.Meta(
        description="counts against the monthly offer cap")] = False
    not_before: Annotated[int | None, msgspec.Meta(
        description="epoch ms: held until quiet hours end")] = None


class Alert(msgspec.Struct, frozen=True):
    """A churn alert: who, when, how bad, why, and what to do about it (docs/contract.md §4).
    Published on churn.alerts and to the sinks; deduplicate on alert_id."""

    alert_id: Annotated[str, msgspec.Meta(
        description="the same cause (subscriber, triggering event, rules) gives the same id")]
    subscriber_id: Annotated[str, msgspec.Meta(
        description="normalised subscriber id; `*` for a rule-storm notice")]
    ts: Annotated[int, msgspec.Meta(description="event time of the triggering event, epoch ms")]
    event_id: Annotated[str, msgspec.Meta(description="the triggering event")]
    severity: Annotated[str, msgspec.Meta(extra_json_schema=_SEVERITY)]
    score: Annotated[float, msgspec.Meta(description="the model's churn probability")]
    rules: Annotated[list[str], msgspec.Meta(description="ids of the rules that fired")]
    reasons: list[_Reason]
    segment: str
    actions: Annotated[list[Action], msgspec.Meta(
        description="the actions to perform, each owned by a team")]
    detected_at: Annotated[int, msgspec.Meta(description="wall clock of detection, epoch ms")]
    model_version: str
    ruleset_version: str
    ingested_at: Annotated[int | None, msgspec.Meta(
        description="when the triggering event reached the broker, epoch ms")] = None
    suppressed: list[_Suppressed] = []  # actions the contact policy withheld, with why
    holdout: Annotated[bool, msgspec.Meta(
        description="in the random holdout: actions withheld to measure their effect")] = False
    # per group of alternatives: the one chosen and why (alerting.allocate)
    allocation: list[_Choice] = []


class ScoreRecord(msgspec.Struct, frozen=True, array_like=False):
    """One scored event, so alert quality can be measured from outside (churn.scores and
    the scores JSONL file)."""

    event_id: str
    subscriber_id: str
    ts: Annotated[int, msgspec.Meta(description="event time, epoch ms")]
    score: Annotated[float, msgspec.Meta(description="the model's churn probability")]
    severity: Annotated[str | None, msgspec.Meta(
        description="the highest severity of the rules that held, null when none did",
        extra_json_schema={"enum": [*SEVERITIES, None]})]
    rules: Annotated[list[str], msgspec.Meta(description="ids of the acting rules that held")]
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
