"""Failpoints for crash tests: ``CHURNWATCH_FAILPOINT=<name>:<marker file>[:<n>[:stop]]``
makes the worker kill itself (SIGKILL, no cleanup) the ``n``-th time (default: first) it
reaches ``<name>``; the marker file makes it fire once, so the restarted worker runs through.
With ``stop`` it stops itself instead (SIGSTOP: a stalled worker, resumed by SIGCONT).
Unset, a failpoint costs one dict lookup.

Points, in the order a batch reaches them (``streams.pipeline`` and ``churnwatch.worker``):
``before_redis_write`` (features staged and alerts decided, nothing written),
``after_commit`` (states and pending alerts written to Redis, nothing published),
``before_send`` (dead letters published, alerts not yet), ``after_send`` (every sink has the
alerts, not yet marked delivered) and ``before_offset_commit`` (the batch is done, Faust has
not acknowledged its messages, so their offsets are not committed).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

ENV = "CHURNWATCH_FAILPOINT"
POINTS = ("before_redis_write", "after_commit", "before_send", "after_send",
          "before_offset_commit")
_reached: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Die here if the configured failpoint is ``name``, reached for the configured time,
    and has not fired yet."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    marker, _, rest = rest.partition(":")
    nth, _, action = rest.partition(":")
    _reached[name] += 1
    if not marker or _reached[name] < int(nth or 1) or Path(marker).exists():
        return
    Path(marker).write_text(name)
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
