"""The contact policy: which of an alert's actions may reach the subscriber, and when.

Internal actions (network fix, billing review) always go ahead. Actions that call, message
or visit the subscriber are withheld for subscribers on the do-not-contact list and beyond
the monthly caps (contacts, and offers among them); those that would land in quiet hours
(operator's time zone) are held until the quiet hours end. Counters live in the alert
ledger next to the cooldowns (``cap:contact:<yyyymm>``, ``cap:offer:<yyyymm>``), so they are
committed atomically with the batch. Pure: the do-not-contact set is passed in.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from alerting.alert import Action


@dataclass(frozen=True)
class ContactPolicy:
    max_contacts_per_month: int = 4
    max_offers_per_month: int = 2
    quiet_start_hour: int = 21
    quiet_end_hour: int = 8
    timezone: str = "UTC"

    def quiet_until(self, now_ms: int) -> int | None:
        """End of the quiet hours (epoch ms) if ``now_ms`` falls inside them, else None."""
        if self.quiet_start_hour == self.quiet_end_hour:
            return None
        local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(self.timezone))
        hour = local.hour
        start, end = self.quiet_start_hour, self.quiet_end_hour
        inside = (start <= hour or hour < end) if start > end else (start <= hour < end)
        if not inside:
            return None
        release = local.replace(hour=end, minute=0, second=0, microsecond=0)
        if release <= local:
            release += timedelta(days=1)
        return int(release.timestamp() * 1000)


def apply_policy(
    policy: ContactPolicy,
    actions: list[Action],
    entries: MutableMapping[str, bytes],
    subscriber_id: str,
    month: str,
    now_ms: int,
    do_not_contact: Collection[str],
) -> tuple[list[Action], list[dict[str, str]], dict[str, bytes]]:
    """Kept actions (quiet-hour ones with ``not_before``), withheld ones with the reason, and
    the ledger counters to commit. ``entries`` (the subscriber's ledger) is updated too."""
    contact_key, offer_key = f"cap:contact:{month}", f"cap:offer:{month}"
    contacts = int(entries.get(contact_key, b"0"))
    offers = int(entries.get(offer_key, b"0"))
    release = policy.quiet_until(now_ms)
    kept: list[Action] = []
    withheld: list[dict[str, str]] = []
    for action in actions:
        if action.channel == "internal":
            kept.append(action)
            continue
        if subscriber_id in do_not_contact:
            withheld.append({"id": action.id, "reason": "do-not-contact"})
            continue
        if contacts >= policy.max_contacts_per_month:
            withheld.append({"id": action.id, "reason": "monthly contact cap"})
            continue
        if action.offer and offers >= policy.max_offers_per_month:
            withheld.append({"id": action.id, "reason": "monthly offer cap"})
            continue
        contacts += 1
        offers += action.offer
        if release is not None and action.channel in ("call", "visit", "message"):
            action = msgspec.structs.replace(action, not_before=release)
        kept.append(action)
    changed = {}
    if contacts != int(entries.get(contact_key, b"0")):
        changed[contact_key] = str(contacts).encode()
    if offers != int(entries.get(offer_key, b"0")):
        changed[offer_key] = str(offers).encode()
    entries.update(changed)
    return kept, withheld, changed
