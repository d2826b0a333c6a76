"""Alert and score sinks that live outside Kafka."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class JsonlSink:
    """Appends JSON records, one per line, and fsyncs each batch before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        with self.path.open("ab") as fh:
            fh.write(b"".join(r + b"\n" for r in records))
            fh.flush()
            os.fsync(fh.fileno())
