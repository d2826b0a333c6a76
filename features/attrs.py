"""Bounds on a profile's attributes (``attrs``): how many keys are stored per subscriber.

The event contract already bounds each key (1–64 characters) and value (a finite number in
±1e12); the number of keys is bounded here, when a profile is applied: a profile with more
than ``max_keys`` attributes keeps the first ``max_keys`` in key order (sorted, so the kept
set does not depend on the producer's JSON key order) and keys longer than ``max_key_length``
are dropped. The dropped ones are counted (``churnwatch_dropped_attrs_total``); the event
itself is applied (docs/contract.md: dropped, not dead-lettered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_KEYS = 64
MAX_KEY_LENGTH = 64  # the contract's own limit (churnwatch.core.events)


@dataclass(frozen=True)
class AttrBounds:
    """At most ``max_keys`` keys per profile, each at most ``max_key_length`` characters."""

    max_keys: int = MAX_KEYS
    max_key_length: int = MAX_KEY_LENGTH

    def apply(self, attrs: Mapping[str, float] | None) -> tuple[dict[str, float], int]:
        """The attributes kept, and how many were dropped."""
        if not attrs:
            return {}, 0
        if len(attrs) <= self.max_keys and all(len(k) <= self.max_key_length for k in attrs):
            return dict(attrs), 0  # the common case: nothing to drop, order kept
        fitting = sorted(k for k in attrs if len(k) <= self.max_key_length)[:self.max_keys]
        return {k: attrs[k] for k in fitting}, len(attrs) - len(fitting)
