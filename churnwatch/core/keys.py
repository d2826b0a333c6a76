"""Redis key layout. Every key of one subscriber carries the ``{subscriber}`` hash tag, so
one batch script touches one Redis Cluster slot per subscriber. Keys used together by one
command share a hash tag too: the storm keys (``{storm}``, moved between by LMOVE), and each
partition's silence index (``{p<n>}``). Every other global key is a single key (one slot)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under a prefix (default ``cw``)."""

    prefix: str = "cw"

    def state(self, subscriber_id: str) -> str:
        """Committed feature state (binary blob, see ``features.codec``)."""
        return f"{self.prefix}:{{{subscriber_id}}}:s"

    def states(self, subscriber_ids: list[str]) -> list[str]:
        """:meth:`state` of each subscriber (a batch's, at once)."""
        head = f"{self.prefix}:{{"
        return [head + sid + "}:s" for sid in subscriber_ids]

    def ledger(self, subscriber_id: str) -> str:
        """Alert ledger hash: ``r:<rule>`` cooldown entries, ``p:<event_id>`` pending alerts."""
        return f"{self.prefix}:{{{subscriber_id}}}:ledger"

    def alerts(self, subscriber_id: str) -> str:
        """The subscriber's recent delivered alerts (a list of JSON, newest first)."""
        return f"{self.prefix}:{{{subscriber_id}}}:alerts"

    def risk(self, subscriber_id: str) -> str:
        """The subscriber's risk score over time (4-byte points, one per day; see
        alerting.risk). One letter: the key name is part of each key's memory."""
        return f"{self.prefix}:{{{subscriber_id}}}:r"

    def legacy_risk(self, subscriber_id: str) -> str:
        """The risk history of earlier releases (7-byte points), converted to :meth:`risk`
        by the subscriber's next point and deleted with the subscriber."""
        return f"{self.prefix}:{{{subscriber_id}}}:risk"

    def feed(self) -> str:
        """The global feed of delivered alerts, for the retention team's page (a stream)."""
        return f"{self.prefix}:feed"

    def silence_due(self, partition: int) -> str:
        """Per-partition sorted set: subscriber → event time at which to re-check its silence."""
        return f"{self.prefix}:silence:{{p{partition}}}:due"

    def watermarks(self) -> str:
        """Sorted set: partition → highest event time seen on it (the event-time watermark)."""
        return f"{self.prefix}:watermarks"

    def web_session(self, digest: str) -> str:
        """A retention-page session, by the SHA-256 of its id (the id is only in the cookie)."""
        return f"{self.prefix}:web:session:{digest}"

    def do_not_contact(self) -> str:
        """Set of subscriber ids that no retention action may contact."""
        return f"{self.prefix}:dnc"

    def effect(self, name: str) -> str:
        """The incrementality ledger's key ``name`` (``open``, ``alerts``, ``bysub``,
        ``counts``, ``done``, ``clock``; alerting/effect.lua), all in the ``{effect}`` slot."""
        return f"{self.prefix}:{{effect}}:{name}"

    def held(self, rule: str) -> str:
        """Alerts whose actions a storm on ``rule`` holds for release or discard (JSON list)."""
        return f"{self.prefix}:{{storm}}:held:{rule}"

    def released(self) -> str:
        """Held alerts released by an operator, waiting for a worker to deliver their actions."""
        return f"{self.prefix}:{{storm}}:released"

    # The online model's keys share the {model} hash tag, so one script can update them
    # together (also on Redis Cluster).
    def model(self, name: str) -> str:
        """Model key ``name``: ``examples`` (stream of labelled examples), ``v:<version>``
        (an immutable checkpoint), ``versions`` (hash version → metadata), ``head`` (the
        learner's latest version), ``active`` (the version workers score with), ``pinned``,
        ``history`` (previous actives, for rollback), ``seq``, ``learner`` (the lock),
        ``dedup`` (the learner's dedup window, published with the head)."""
        return f"{self.prefix}:{{model}}:{name}"

    def applied_offsets(self, group: str) -> str:
        """Hash: ``<topic>:<partition>`` → the offset after the last record whose effects the
        consumer group ``group`` stored (written with the states, in the same transaction).
        Next to it, ``<this key>:writes:<topic>:<partition>``: each partition's counter of
        fenced writes (``streams.ownership``)."""
        return f"{self.prefix}:applied:{{{group}}}"

    def partition_owners(self, group: str) -> str:
        """Hash: ``<topic>:<partition>`` → the token of the worker of ``group`` that claimed
        it last (``streams.ownership``: a former owner's commits are refused)."""
        return f"{self.prefix}:owners:{{{group}}}"

    def broker_offsets(self, group: str) -> str:
        """Hash: highest ``end:<partition>`` and ``committed:<partition>`` offsets of
        churn.events the consumer group ``group`` has seen (``churnwatch.infra.kafka.broker_guard``)."""
        return f"{self.prefix}:broker:{{{group}}}:offsets"
