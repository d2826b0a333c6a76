"""Failpoints for crash tests: ``CHURNWATCH_FAILPOINT=<name>:<marker file>`` makes the worker
kill itself (SIGKILL, no cleanup) the first time it reaches ``<name>``; the marker file makes
it fire once, so the restarted worker runs through. Unset, a failpoint costs one dict lookup."""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "CHURNWATCH_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here if the configured failpoint is ``name`` and has not fired yet."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name or not marker or Path(marker).exists():
        return
    Path(marker).write_text(name)
    os.kill(os.getpid(), signal.SIGKILL)
