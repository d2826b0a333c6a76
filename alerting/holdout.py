"""The random holdout: at-risk subscribers who get no retention action, so the actions' effect
can be measured (churn rate of treated vs held-out alerted subscribers).

Membership is a hash of the subscriber id and a salt, not a random draw: every worker, every
restart and every replay puts the same subscribers in the holdout, and a subscriber stays in
or out for good (changing the salt starts a new experiment).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Holdout:
    """``fraction`` of subscribers (0 = none) are held out."""

    fraction: float = 0.0
    salt: str = "churnwatch-holdout-1"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("the holdout fraction must be within [0, 1]")

    def holds(self, subscriber_id: str) -> bool:
        """Is this subscriber in the holdout?"""
        if self.fraction <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.salt}\x1f{subscriber_id}".encode(),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.fraction * 2.0**64
