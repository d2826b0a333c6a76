"""Detection latency under a paced standard producer (``bench_intake --latency-s``).

After a worker drained the backlog, the same worker is offered a fixed load (half its
measured rate, by default) by confluent-kafka: one event per message, keyed by subscriber,
with the run's compression and partitioner, sent on a 10 ms tick. The events continue the
feed's subscribers' timelines after its last day. Latency is each alert's
``detected_at - ingested_at``: ``ingested_at`` is the record's timestamp, which librdkafka sets
when the message is produced, so it includes the producer's linger and the broker round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson

from benchmarks.bench_e2e import percentiles_ms
from benchmarks.standard_producer import produce
from churnwatch.dev.simulate import SimConfig, Simulation

TICK_S = 0.01
EVENTS_PER_SUBSCRIBER_DAY = 2.1  # the simulator's mean (measured)
MIN_ALERTS = 20  # below this, the percentiles are called thin
_encode = msgspec.json.Encoder().encode


def continuation(base: SimConfig, need: int) -> list[bytes]:
    """At least ``need`` events (if the population makes that many in a year) of ``base``'s
    subscribers, from the first month start after ``base``'s last day."""
    days = min(365, max(30, -(-need // int(EVENTS_PER_SUBSCRIBER_DAY * base.subscribers))))
    after = base.start + timedelta(days=base.days)
    start = datetime(after.year + after.month // 12, after.month % 12 + 1, 1, tzinfo=UTC)
    sim = Simulation(SimConfig(subscribers=base.subscribers, days=days, seed=base.seed + 1000,
                               start=start))
    return [_encode(e) for e in sim.events()]


def paced(lines: Sequence[bytes], rate: float, seconds: float, clock: list[float]
          ) -> Iterator[bytes]:
    """``lines`` at ``rate`` per second for ``seconds``, a tick's worth at a time;
    ``clock`` gets the start and end times (``time.perf_counter``)."""
    t0 = time.perf_counter()
    clock[:] = [t0, t0]
    sent = 0
    tick = 0
    while sent < len(lines):
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        due = min(len(lines), int(rate * elapsed))
        while sent < due:
            yield lines[sent]
            sent += 1
        tick += 1
        time.sleep(max(0.0, t0 + tick * TICK_S - time.perf_counter()))
    clock[1] = time.perf_counter()


def offer(bootstrap: str, topic: str, lines: Sequence[bytes], rate: float, seconds: float, *,
          compression: str, partitioner: str) -> dict[str, Any]:
    """Produce ``lines`` at ``rate`` for ``seconds`` (one event per message); returns what was
    sent, the achieved rate and the wall-clock start in ms (alerts' ``ingested_at`` is later)."""
    started_ms = int(time.time() * 1000)
    clock: list[float] = []
    delivery = produce(bootstrap, topic, paced(lines, rate, seconds, clock),
                       compression=compression, partitioner=partitioner, key="normalised")
    window = clock[1] - clock[0] if clock else 0.0
    return {"offered_events_per_s": round(rate), "events": delivery.messages,
            "window_s": round(window, 2),
            "achieved_events_per_s": round(delivery.messages / window) if window else None,
            "started_ms": started_ms}


def alert_latencies(alerts_jsonl: Path, since_ms: int) -> list[float]:
    """``detected_at - ingested_at`` (ms) of the alerts on events ingested from ``since_ms``."""
    if not alerts_jsonl.exists():
        return []
    out: list[float] = []
    for line in alerts_jsonl.read_bytes().splitlines():
        alert = orjson.loads(line)
        ingested = alert.get("ingested_at")
        if ingested and ingested >= since_ms and alert.get("detected_at"):
            out.append(float(alert["detected_at"] - ingested))
    return out


def summary(offered: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    """The report's ``latency`` section."""
    return {**{k: v for k, v in offered.items() if k != "started_ms"},
            "alerts": len(latencies), "enough_alerts": len(latencies) >= MIN_ALERTS,
            "alert_latency_ms": percentiles_ms(latencies),
            "alert_latency_basis": "alerts' detected_at - ingested_at (ingested_at = the "
                                   "record's timestamp, set by librdkafka at produce time)"}
