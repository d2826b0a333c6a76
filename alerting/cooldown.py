"""Per-rule alert cooldowns in event time: pure decisions over a subscriber's ledger entries.

An entry is ``"ts|rank|event_id"`` of the last alert a rule raised for the subscriber. A rule
may alert again once ``cooldown`` has passed since then, or sooner if its severity rank rose;
an event older than the last alert never reopens the rule.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence


def encode_entry(ts: int, rank: int, event_id: str) -> bytes:
    return f"{ts}|{rank}|{event_id}".encode()


def decode_entry(raw: bytes) -> tuple[int, int, str]:
    ts, rank, event_id = raw.decode().split("|", 2)
    return int(ts), int(rank), event_id


def decide(
    entries: MutableMapping[str, bytes],
    rules: Sequence[tuple[str, int, int]],
    ts: int,
    event_id: str,
) -> list[str]:
    """Rules (id, severity rank, cooldown ms) that may alert now; updates ``entries`` for them."""
    passed = []
    for rule, rank, cooldown_ms in rules:
        prev = entries.get(rule)
        if prev is not None:
            prev_ts, prev_rank, _ = decode_entry(prev)
            if ts < prev_ts or (ts - prev_ts < cooldown_ms and rank <= prev_rank):
                continue
        entries[rule] = encode_entry(ts, rank, event_id)
        passed.append(rule)
    return passed
