"""Feeds as principals of the HTTP ingest: what each feed may send (``streams.ingest``).

The tokens file names, per feed, the event types it may send and optionally the subscriber
ids it may speak for (``[feeds.<name>]``, docs/operations.md). A feed without such a table
gets :data:`DEFAULT_TYPES`: behaviour events only. Labels (``churn``, ``active``) teach the
model and ``outcome`` moves the retention metric, so they need an explicit grant.

Event ids are namespaced by feed at the ingest (:func:`namespaced_id`): the worker's
``event_id`` dedup then never lets one feed suppress another feed's event.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import msgspec

from churnwatch.core.errors import ConfigError
from churnwatch.core.events import EVENT_TYPES, Event

LABEL_TYPES = ("churn", "active", "outcome")
DEFAULT_TYPES = tuple(t for t in EVENT_TYPES if t not in LABEL_TYPES)
MAX_EVENT_ID = 128  # the contract's limit (churnwatch.core.events)


class FeedGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one feed may send: event ``types`` and, if given, subscriber id prefixes (of
    the normalised id, e.g. ``"+4477009"`` or ``"crm-"``)."""

    types: frozenset[str] = frozenset(DEFAULT_TYPES)
    subscriber_prefixes: tuple[str, ...] = ()

    def refusal(self, feed: str, event: Event) -> str | None:
        """Why ``feed`` may not send ``event``, or None when it may."""
        if event.type not in self.types:
            return (f"feed {feed!r} may not send {event.type!r} events (grant it in the "
                    "tokens file: [feeds.<feed>] types)")
        if self.subscriber_prefixes and not event.subscriber_id.startswith(
                self.subscriber_prefixes):
            return (f"feed {feed!r} may not send events of this subscriber_id (outside its "
                    "subscriber_prefixes)")
        return None


DEFAULT_GRANT = FeedGrant()


def parse_grants(path: object, table: Any) -> dict[str, FeedGrant]:
    """The ``[feeds]`` table of a tokens file: feed name → :class:`FeedGrant`."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [feeds] must be a table of feed tables")
    grants: dict[str, FeedGrant] = {}
    for feed, raw in table.items():
        try:
            grant = msgspec.convert(raw, FeedGrant)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: [feeds.{feed}]: {exc}. Fix: use types = [...] and "
                              "subscriber_prefixes = [...] only") from None
        unknown = sorted(grant.types.difference(EVENT_TYPES))
        if unknown:
            raise ConfigError(f"{path}: [feeds.{feed}]: unknown event types {unknown}; the "
                              f"types are {', '.join(EVENT_TYPES)}")
        if any(not p for p in grant.subscriber_prefixes):
            raise ConfigError(f"{path}: [feeds.{feed}]: an empty subscriber prefix matches "
                              "everyone; leave subscriber_prefixes out instead")
        grants[feed] = grant
    return grants


def namespaced_id(feed: str, event_id: str) -> str:
    """``<feed>:<event_id>``: the id the worker deduplicates on. Feed names hold no ``:``, so
    two feeds never share an id. An id too long for the contract's 128 characters becomes
    ``<feed>:#`` and a 128-bit hash of it (deterministic: a resend is still a duplicate)."""
    out = f"{feed}:{event_id}"
    if len(out) <= MAX_EVENT_ID:
        return out
    return f"{feed}:#{blake2b(event_id.encode(), digest_size=16).hexdigest()}"
