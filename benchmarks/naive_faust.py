"""The naive baseline of ``churnwatch bench``: a plain Faust agent, one Redis round trip per event.

    NAIVE_BROKER=kafka://127.0.0.1:9092 NAIVE_REDIS_URL=redis://127.0.0.1:6379/0 \\
    NAIVE_TOPIC=bench.naive.events NAIVE_STATS=/tmp/naive.json python -m benchmarks.naive_faust

The design docs/benchmarks.md measures at ~2,900–3,500 events/s: Faust's default settings, one Kafka
message per event (``async for value in stream``), and per event

1. decode and validate the JSON event (``churnwatch.core.events.decode_event``, the engine's own
   decoder; invalid events are counted and skipped),
2. one pipelined Redis round trip that updates the subscriber's state and reads it back
   (:class:`benchmarks.bench_features.NaivePerEventStore`: dedup set, day-bucket counters,
   clocks, ``HGETALL``; here :class:`WindowedNaiveStore`, which also prunes buckets that left
   the 35-day window) and the 27 features computed from it in Python,
3. the operators' three indicators (spend decline, login drop, complaints) and the 2-of-3
   rule in plain Python; an alert is counted, not published.

Correctness is not the point (see ``NaivePerEventStore``), cost is: it does the same kind of work
per event as the engine does per batch. Every 0.2 s it writes ``{"processed", "alerts",
"invalid", "duplicates", "t"}`` (``t`` = ``time.time()``) to ``NAIVE_STATS`` so the benchmark can
time it without asking it anything.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

from benchmarks.bench_features import NaivePerEventStore
from churnwatch.core.errors import EventError
from churnwatch.core.events import Event, decode_event
from churnwatch.core.units import DAY_MS
from features.schema import month_of

# positions in NaivePerEventStore.features(): spend_m0..m5, logins_7d, logins_prev28, complaints_30d
_SPEND_M1, _SPEND_M2, _SPEND_M3, _SPEND_M4 = 1, 2, 3, 4
_LOGINS_7D, _LOGINS_PREV28, _COMPLAINTS_30D = 6, 7, 8


def indicators(row) -> tuple[bool, bool, bool]:  # type: ignore[no-untyped-def]
    """spend_decline, login_drop, complaints (rules/default.toml) from one feature row."""
    m1, m2, m3, m4 = (float(row[i]) for i in (_SPEND_M1, _SPEND_M2, _SPEND_M3, _SPEND_M4))
    spend_decline = m4 > 0 and m1 <= 0.8 * m2 and m2 <= 0.8 * m3 and m3 <= 0.8 * m4
    login_drop = row[_LOGINS_7D] <= 1 and row[_LOGINS_PREV28] >= 20
    complaints = row[_COMPLAINTS_30D] >= 2
    return bool(spend_decline), bool(login_drop), bool(complaints)


class WindowedNaiveStore(NaivePerEventStore):
    """:class:`NaivePerEventStore` that also drops, in the same round trip, the day buckets
    35-36 days behind the event and the month 6 behind, so a subscriber's hash stays at the
    window the features read instead of growing with the feed. Without it the naive design
    slows down as history accumulates (redis-py parses every ``HGETALL`` field in Python:
    ~350 µs per event at 20 fields, ~1.4 ms at 250 on this machine), which would make the
    ratio depend on the feed's length rather than on the design."""

    _SLOTS = range(9)

    def prune(self, pipe: Any, hkey: str, ev: Event) -> None:
        day, month = ev.ts // DAY_MS, month_of(ev.ts)
        pipe.hdel(hkey, *(f"d:{day - back}:{slot}" for back in (35, 36) for slot in self._SLOTS),
                  f"m:{month - 6}")


def create_app() -> faust.App:
    env = os.environ
    topic_name = env.get("NAIVE_TOPIC", "bench.naive.events")
    stats_path = Path(env["NAIVE_STATS"]) if env.get("NAIVE_STATS") else None
    app = faust.App(
        env.get("NAIVE_APP_ID", "churnwatch-bench-naive"),
        broker=env["NAIVE_BROKER"],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        datadir=os.path.join(tempfile.gettempdir(), "churnwatch-bench-naive-faust-data"),
        topic_partitions=int(env.get("NAIVE_PARTITIONS", "4")),
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
    )
    redis = aioredis.Redis.from_url(env["NAIVE_REDIS_URL"])
    store = WindowedNaiveStore(redis, prefix="naive")
    stats = {"processed": 0, "alerts": 0, "invalid": 0, "duplicates": 0}
    topic = app.topic(topic_name, internal=False)

    @app.agent(topic)
    async def naive(stream: faust.StreamT) -> None:
        async for value in stream:
            stats["processed"] += 1
            try:
                event = decode_event(value or b"")
            except EventError:
                stats["invalid"] += 1
                continue
            row = await store.apply(event)
            if row is None:
                stats["duplicates"] += 1
                continue
            if sum(indicators(row)) >= 2:  # the operators' 2-of-3 rule
                stats["alerts"] += 1

    @app.timer(interval=0.2)
    async def write_stats() -> None:
        if stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({**stats, "redis_s": store.round_trip_s,
                                          "features_s": store.compute_s, "t": time.time()}))
            tmp.replace(stats_path)

    return app


def main() -> None:
    app = create_app()
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
