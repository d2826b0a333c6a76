"""Fleet helpers for the kill-loop tests: numbered feeds, producing them, consumer-group
inspection and waiting for a worker to serve its partitions."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import orjson

from churnwatch.dev.simulate import SimConfig, Simulation
from churnwatch.infra.config import EVENTS_TOPIC
from churnwatch.infra.kafka.produce import EventProducer
from tests.support.worker import Worker

PARTITIONS = 4


def feed(subscribers: int, days: int = 60, seed: int = 1) -> list[bytes]:
    """Numbered events (unique ids) with duplicates, late and invalid records mixed in."""
    sim = Simulation(SimConfig(subscribers=subscribers, days=days, churn_rate=0.5, seed=seed,
                               duplicate_rate=0.01, out_of_order_rate=0.01, invalid_rate=0.002))
    return [orjson.dumps(e) for e in sim.events()]


def produce(bootstrap: str, lines: list[bytes], partitions: int, per_message: int = 10) -> None:
    """Send ``lines`` to churn.events (acks=all), packed as the replay command packs them."""
    async def go() -> None:
        async with EventProducer(bootstrap, EVENTS_TOPIC, partitions, per_message) as producer:
            await producer.send_lines(lines)

    asyncio.run(go())


def group_of(n: int, broker, redis_url: str, tmp: Path, partitions: int = PARTITIONS,
             **env: str) -> list[Worker]:
    """``n`` workers (not started) sharing one consumer group on ``partitions`` partitions,
    each with its own log."""
    group = f"chaos-{os.urandom(4).hex()}"
    out = []
    for i in range(n):
        (tmp / f"w{i}").mkdir()
        w = Worker(broker, redis_url, tmp / f"w{i}", partitions=partitions,
                   CHURNWATCH_SILENCE_INTERVAL_S="3600", CHURNWATCH_WORK_QUEUES="true",
                   CHURNWATCH_BATCH_MAX="20", **env)
        w.app_id = w.env["CHURNWATCH_APP_ID"] = group
        out.append(w)
    return out


def _startup_failure(log: str) -> str:
    """A dead worker's log lines at error level or with a traceback (a crash's cause is
    often far above the shutdown lines), then the log's last lines."""
    causes = [line for line in log.splitlines()
              if any(mark in line for mark in ('"level": "error"', '"level": "critical"',
                                               '"exception"', "Traceback", "Error"))]
    return "\n".join(causes)[-6000:] + "\n...\n" + log[-3000:]


def wait_serving(w: Worker, timeout: float = 90) -> None:
    """Until the worker's app is up (its metrics endpoint answers) or an armed failpoint
    killed it first."""
    deadline = time.monotonic() + timeout
    while w.metric("churnwatch_ruleset_info") is None:
        assert w.proc is not None
        code = w.proc.poll()
        if code == -signal.SIGKILL and "CHURNWATCH_FAILPOINT" in w.env:
            return
        assert code is None and time.monotonic() < deadline, \
            f"worker did not start ({code}):\n{_startup_failure(w.log_path.read_text())}"
        time.sleep(0.25)
