"""Redis key layout. Every key of one subscriber carries the ``{subscriber}`` hash tag, so
one batch script touches one Redis Cluster slot per subscriber."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under a prefix (default ``cw``)."""

    prefix: str = "cw"

    def state(self, subscriber_id: str) -> str:
        """Committed feature state (binary blob, see ``features.codec``)."""
        return f"{self.prefix}:{{{subscriber_id}}}:s"

    def ledger(self, subscriber_id: str) -> str:
        """Alert ledger hash: ``r:<rule>`` cooldown entries, ``p:<event_id>`` pending alerts."""
        return f"{self.prefix}:{{{subscriber_id}}}:ledger"

    def alerts(self, subscriber_id: str) -> str:
        """The subscriber's recent delivered alerts (a list of JSON, newest first)."""
        return f"{self.prefix}:{{{subscriber_id}}}:alerts"

    def silence_due(self, partition: int) -> str:
        """Per-partition sorted set: subscriber → event time at which to re-check its silence."""
        return f"{self.prefix}:silence:{{p{partition}}}:due"

    def watermarks(self) -> str:
        """Sorted set: partition → highest event time seen on it (the event-time watermark)."""
        return f"{self.prefix}:watermarks"

    def do_not_contact(self) -> str:
        """Set of subscriber ids that no retention action may contact."""
        return f"{self.prefix}:dnc"

    def held(self, rule: str) -> str:
        """Alerts whose actions a storm on ``rule`` holds for release or discard (JSON list)."""
        return f"{self.prefix}:storm:held:{rule}"

    def released(self) -> str:
        """Held alerts released by an operator, waiting for a worker to deliver their actions."""
        return f"{self.prefix}:storm:released"

    def broker_offsets(self, group: str) -> str:
        """Hash: highest ``end:<partition>`` and ``committed:<partition>`` offsets of
        churn.events the consumer group ``group`` has seen (``churnwatch.broker_guard``)."""
        return f"{self.prefix}:broker:{{{group}}}:offsets"
