"""A hand-written feed of events at the operators' thresholds, with its clock
(``NOW``) and month helpers, for the end-to-end tests."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson

from tests.support.feeds import DAY

NOW = int(datetime(2026, 5, 10, 12, tzinfo=timezone.utc).timestamp() * 1000)


MONTHS = [int(datetime(2026, m, 5, tzinfo=timezone.utc).timestamp() * 1000) for m in (1, 2, 3, 4)]


class Feed:
    """Builds events with unique ids."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, sub: str, type_: str, ts: int, **fields: object) -> dict:
        ev = {"event_id": f"{sub}-{len(self.events)}", "subscriber_id": sub, "type": type_,
              "ts": ts, **fields}
        self.events.append(ev)
        return ev

    def logins(self, sub: str, before: int, recent: int) -> None:
        """``before`` logins in the 4 weeks before the last 7 days, ``recent`` in the last 7."""
        for k in range(before):
            self.add(sub, "login", NOW - 8 * DAY - k * DAY // 2, channel="app")
        for k in range(recent):
            self.add(sub, "login", NOW - 2 * DAY - k * 3600_000, channel="app")

    def spend(self, sub: str, amounts: list[float]) -> None:
        """One spend in each of January..April 2026 (the 4 complete months before May)."""
        for ts, amount in zip(MONTHS, amounts):
            self.add(sub, "spend", ts, amount=amount, kind="recharge")

    def complaints(self, sub: str, n: int) -> None:
        """``n`` complaints in the last hour before NOW (after every login and spend)."""
        for k in range(n):
            self.add(sub, "complaint", NOW - 3600_000 + k * 60_000,
                     category="network" if k % 2 == 0 else "billing")

    def write(self, path: Path) -> Path:
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in sorted(
            self.events, key=lambda e: e["ts"])) + b"\n")
        return path
