"""Baseline 2 of ``benchmarks/bench_intake.py``: the operators' 2-of-3 rule in Quix Streams.

    QUIX_BROKER=127.0.0.1:9092 QUIX_TOPIC=churn.events QUIX_GROUP=bench-quix \\
    QUIX_STATE_DIR=/tmp/quix-state QUIX_STATS=/tmp/quix.json QUIX_EXPECTED=250000 \\
    /tmp/churnwatch-quix-venv/bin/python benchmarks/quix_rule.py

Runs in its own virtualenv (Quix Streams 3.28 pins ``confluent-kafka<2.13``,
``pydantic<2.14`` and ``pydantic-settings<2.16``, which conflict with churnwatch's pins), so
this file imports only the standard library, ``orjson`` and ``quixstreams``: never churnwatch.

A Quix ``Application`` with its default settings (at-least-once, commit every 5 s, RocksDB
state with changelog topics) except where the benchmark needs otherwise: the consumer group,
``auto_offset_reset="earliest"`` (the feed is a backlog written before the app starts) and the
state directory. One JSON event per message, keyed by subscriber; per subscriber, in Quix's
state: logins and complaints per UTC day and spend per calendar month (only the windows the
rule reads), and the subscriber's event-time clock. Per event the three indicators of
rules/default.toml are evaluated at that clock:

- spend_decline: ``spend_m4 > 0 and m1 <= 0.8 m2 and m2 <= 0.8 m3 and m3 <= 0.8 m4``
  (``spend_mK``: spend in the K-th complete calendar month before the clock's month);
- login_drop: ``logins_7d <= 1 and logins_prev28 >= 20``;
- complaints: ``complaints_30d >= 2``;

and an alert is counted when 2 of 3 hold. It does much less than churnwatch: no
deduplication by event id, no lateness policy or dead letters, 3 indicators instead of 27
features, 6 rules and a model, no cooldowns, no alerts published. Malformed events (bad type,
timestamp or subscriber id) are counted and skipped.

Every 2,000 messages and at message ``QUIX_EXPECTED`` it writes
``{"processed", "alerts", "invalid", "t"}`` (``t`` = ``time.time()``) to ``QUIX_STATS``.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from quixstreams import Application, State

DAY_MS = 86_400_000
TYPES = {"profile", "usage", "login", "spend", "complaint", "plan_change", "churn", "active"}


def event_ms(ts: Any) -> int | None:
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str):
        try:
            t = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return int(t.timestamp() * 1000)
    return None


def month_of(ts_ms: int) -> int:
    t = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return (t.year - 1970) * 12 + t.month - 1


def apply(state: dict[str, Any], kind: str, ts: int, value: dict[str, Any]) -> bool:
    """Add one event to a subscriber's state (pruned to the rule's windows); True when 2 of
    the 3 indicators hold at the subscriber's clock afterwards."""
    day, month = ts // DAY_MS, month_of(ts)
    if kind == "login":
        logins = state.setdefault("l", {})
        logins[str(day)] = logins.get(str(day), 0) + 1
    elif kind == "complaint":
        complaints = state.setdefault("c", {})
        complaints[str(day)] = complaints.get(str(day), 0) + 1
    elif kind == "spend":
        amount = value.get("amount")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
            raise ValueError("bad amount")
        spend = state.setdefault("s", {})
        spend[str(month)] = spend.get(str(month), 0.0) + float(amount)
    clock = state["t"] = max(state.get("t", ts), ts)
    now_day, now_month = clock // DAY_MS, month_of(clock)
    logins = state.get("l", {})
    complaints = state.get("c", {})
    spend = state.get("s", {})
    for bucket, keep in ((logins, 35), (complaints, 30)):  # windows: days now-34..now
        for k in [k for k in bucket if int(k) <= now_day - keep]:
            del bucket[k]
    for k in [k for k in spend if int(k) < now_month - 5]:
        del spend[k]
    logins_7d = sum(n for k, n in logins.items() if now_day - 6 <= int(k) <= now_day)
    logins_prev28 = sum(n for k, n in logins.items() if now_day - 34 <= int(k) < now_day - 6)
    complaints_30d = sum(n for k, n in complaints.items() if now_day - 29 <= int(k) <= now_day)
    m1, m2, m3, m4 = (spend.get(str(now_month - k), 0.0) for k in (1, 2, 3, 4))
    spend_decline = m4 > 0 and m1 <= 0.8 * m2 and m2 <= 0.8 * m3 and m3 <= 0.8 * m4
    login_drop = logins_7d <= 1 and logins_prev28 >= 20
    return spend_decline + login_drop + (complaints_30d >= 2) >= 2


def main() -> None:
    env = os.environ
    stats_path = Path(env["QUIX_STATS"]) if env.get("QUIX_STATS") else None
    expected = int(env.get("QUIX_EXPECTED", "0"))
    stats = {"processed": 0, "alerts": 0, "invalid": 0}

    def write_stats() -> None:
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({**stats, "t": time.time()}))
            tmp.replace(stats_path)

    def count(value: Any) -> None:
        stats["processed"] += 1
        n = stats["processed"]
        if n % 2000 == 0 or n == expected:
            write_stats()

    def valid(value: Any, key: Any, timestamp: int, headers: Any) -> bool:
        ok = key is not None and isinstance(value, dict) and value.get("type") in TYPES \
            and event_ms(value.get("ts")) is not None and isinstance(value.get("event_id"), str)
        if not ok:
            stats["invalid"] += 1
        return ok

    def rule(value: dict[str, Any], state: State) -> None:
        subscriber = state.get("sub", {})
        try:
            alert = apply(subscriber, value["type"], event_ms(value["ts"]), value)
        except ValueError:
            stats["invalid"] += 1
            return
        state.set("sub", subscriber)
        if alert:
            stats["alerts"] += 1

    app = Application(
        broker_address=env["QUIX_BROKER"],
        consumer_group=env.get("QUIX_GROUP", "churnwatch-bench-quix"),
        auto_offset_reset="earliest",
        state_dir=env.get("QUIX_STATE_DIR", "state"),
        loglevel=env.get("QUIX_LOGLEVEL", "WARNING"),
    )
    topic = app.topic(env.get("QUIX_TOPIC", "churn.events"), key_deserializer="str",
                      value_deserializer="json")
    sdf = app.dataframe(topic)
    sdf = sdf.update(count)
    sdf = sdf.filter(valid, metadata=True)
    sdf = sdf.update(rule, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
