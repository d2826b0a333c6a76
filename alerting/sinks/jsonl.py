"""A JSON-lines file: alerts (or score records), one per line, fsynced per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alerting.alert import Alert
from alerting.sinks.base import SinkReport, actions_of


class JsonlSink:
    """Appends JSON records, one per line, and fsyncs each batch before returning."""

    name = "jsonl"
    waits_out_redis = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        self.append(payloads)
        return SinkReport(sent=actions_of(alerts))

    def append(self, records: Sequence[bytes]) -> None:
        """Append ``records`` (JSON, one per line) and fsync."""
        if not records:
            return
        with self.path.open("ab") as fh:
            fh.write(b"".join(r + b"\n" for r in records))
            fh.flush()
            os.fsync(fh.fileno())
