"""The contract every alert sink keeps.

**Durable when it returns.** ``write`` returns only once the sink holds the alerts as
durably as it ever will: acknowledged by every Kafka replica (acks=all), fsynced to the
file, stored by Redis, accepted by the webhook's receiver (2xx) or dead-lettered to
``churn.dlq``. An outage it cannot wait out raises; the batch is then not acknowledged and
its alerts are sent again (each carries its ``alert_id``: sinks and receivers deduplicate).

**Idempotent per alert.** A replayed batch hands the same alerts again; a sink either drops
what it already holds (work queues guard each action) or passes the repeat on with the same
id for the receiver to drop (topic, file, feed, webhook).

**Counted in actions.** The :class:`SinkReport` says how many of the alerts' actions the
sink delivered, found already delivered, or gave up on; the publisher exports them as
``churnwatch_actions_total{sink, outcome}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alerting.alert import Alert


@dataclass(frozen=True)
class SinkReport:
    """Actions of a write: delivered (``sent``), already held (``duplicate``), given up on
    (``dead_letter``, published to ``churn.dlq``)."""

    sent: int = 0
    duplicate: int = 0
    dead_letter: int = 0

    def counts(self) -> dict[str, int]:
        """The non-zero counts by outcome."""
        return {k: v for k, v in (("sent", self.sent), ("duplicate", self.duplicate),
                                  ("dead_letter", self.dead_letter)) if v}


@runtime_checkable
class AlertSink(Protocol):
    """Somewhere alerts go. ``name`` labels its metrics; ``waits_out_redis``: a Redis outage
    during ``write`` is retried until Redis is back (the batch waits) rather than raised."""

    name: str
    waits_out_redis: bool

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        """Hold ``alerts`` (``payloads[i]`` is ``alerts[i]`` as JSON) durably, then return."""
        ...


def actions_of(alerts: Sequence[Alert]) -> int:
    """How many actions ``alerts`` carry."""
    return sum(len(a.actions) for a in alerts)
