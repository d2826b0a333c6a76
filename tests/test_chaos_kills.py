"""Kill loop: 1, 2 or 3 workers in one group are SIGKILLed again and again mid-batch, at
every failpoint (before/after the Redis write, before/after the alert send, before the offset
commit) and at random times, while numbered events keep arriving. The whole history must
still match an offline oracle (tests/support/history.py).

``CHAOS_WORKERS`` lists the worker counts (default ``2``) and ``CHAOS_KILLS`` the kills per
worker count (default 1), so the default run stays short; the full run (RELIABILITY.md) is
``CHAOS_WORKERS=1,2,3 CHAOS_KILLS=8 pytest -m chaos tests/test_chaos_kills.py``: at least 24
kills. ``CHAOS_REPORT=<file>`` appends each run's counts as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from churnwatch.infra.runtime.failpoints import POINTS
from tests.support.fleet import (
    PARTITIONS,
    feed,
    group_of,
    produce,
    wait_serving,
)
from tests.support.history import WEBHOOK_SECRET, HookReceiver, check_history, oracle
from tests.support.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
KILLS = int(os.environ.get("CHAOS_KILLS", "1"))
WORKER_COUNTS = [int(n) for n in os.environ.get("CHAOS_WORKERS", "2").split(",")]
REPORT = os.environ.get("CHAOS_REPORT")
CHUNKS_PER_KILL = 2












class KillLoop:
    """Arms a failpoint (or a random-time kill) on each start and counts where workers died."""

    def __init__(self, tmp: Path, rng: random.Random) -> None:
        self.tmp, self.rng = tmp, rng
        self.plans: dict[int, str] = {}
        self.kills: Counter[str] = Counter()
        self.armed = 0

    def start(self, w: Worker, armed: bool = True) -> None:
        plan = self.rng.choice([*POINTS, "random"]) if armed else "none"
        w.env.pop("CHURNWATCH_FAILPOINT", None)
        if plan in POINTS:
            nth = 1 if plan in ("before_send", "after_send") else self.rng.randint(1, 5)
            self.armed += 1
            w.env["CHURNWATCH_FAILPOINT"] = f"{plan}:{self.tmp / f'fired-{self.armed}'}:{nth}"
        self.plans[id(w)] = plan
        w.start()

    def kill(self, w: Worker, wait_s: float = 12) -> str:
        """Kill ``w`` at its armed failpoint (if reached within ``wait_s``) or now, after a
        random pause; returns where it died."""
        assert w.proc is not None
        plan = self.plans[id(w)]
        where = "random"
        if plan in POINTS:
            try:
                code = w.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                code = None
            assert code in (None, -signal.SIGKILL), \
                f"worker exited with {code}:\n{w.log_path.read_text()[-3000:]}"
            if code is not None:
                where = plan
        else:
            time.sleep(self.rng.uniform(0.1, 2.5))
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGKILL)
        w.proc.wait()
        self.kills[where] += 1
        return where


@pytest.mark.parametrize("n_workers", WORKER_COUNTS)
def test_kill_loop(n_workers: int, broker, redis_url, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = feed(subscribers=50 + 25 * KILLS, seed=n_workers)
    expected = oracle(lines)
    assert len(expected.alert_ids) >= 10 and expected.invalid
    receiver = HookReceiver()
    workers = group_of(n_workers, broker, redis_url, tmp_path,
                       CHURNWATCH_WEBHOOK_URL=receiver.url,
                       CHURNWATCH_WEBHOOK_SECRET=WEBHOOK_SECRET)
    loop = KillLoop(tmp_path, random.Random(1000 * n_workers + KILLS))
    size = -(-len(lines) // (KILLS * CHUNKS_PER_KILL))
    chunks = [lines[i:i + size] for i in range(0, len(lines), size)]
    try:
        for w in workers:
            loop.start(w)
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                wait_serving(w)
        for k, chunk in enumerate(chunks):
            produce(broker.bootstrap, chunk, PARTITIONS)
            if k % CHUNKS_PER_KILL == CHUNKS_PER_KILL - 1 or k == len(chunks) - 1:
                victim = loop.rng.choice(workers)
                loop.kill(victim)
                loop.start(victim, armed=k < len(chunks) - 1)
                wait_serving(victim)
        for w in workers:  # disarm: a failpoint left armed would fire during the catch-up
            if loop.plans[id(w)] != "none":
                loop.kill(w, wait_s=5)
                loop.start(w, armed=False)
        for w in workers:
            w.wait_caught_up(timeout=240)
    finally:
        for w in workers:
            w.stop()
        receiver.close()
    history = check_history(broker.bootstrap, redis_url, workers[0].app_id, expected, receiver)
    assert history.lost == 0 and history.duplicated_actions == 0
    assert sum(loop.kills.values()) >= KILLS
    if REPORT:
        with open(REPORT, "a") as fh:
            fh.write(json.dumps({"test": "kill_loop", "workers": n_workers,
                                 "kills": dict(loop.kills), **vars(history)}) + "\n")
