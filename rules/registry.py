"""The active ruleset, published in Redis so every worker can switch to it without a restart.

``churnwatch rules push FILE`` validates and compiles the file locally, then stores its text
under one key. Workers poll the key's version, compile a new ruleset off the event loop and
swap it in between batches; an invalid ruleset is logged and never replaces a valid one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from churnwatch.core.errors import RulesError
from rules.engine import CompiledRuleset, compile_ruleset
from rules.ruleset import Ruleset, parse_ruleset

ACTIVE_KEY = "cw:rules:active"
log = logging.getLogger("churnwatch.rules")


class Published(msgspec.Struct, frozen=True):
    """A ruleset as published: its version, source name, TOML text and publication time."""

    version: str
    source: str
    text: str
    pushed_at: float


async def publish(redis: Any, text: str, source: str) -> Ruleset:
    """Validate, compile and publish a ruleset; raise RulesError if it is invalid."""
    ruleset = parse_ruleset(text, source)
    compile_ruleset(ruleset)
    record = Published(ruleset.version, source, text, time.time())
    await redis.set(ACTIVE_KEY, msgspec.json.encode(record))
    return ruleset


async def fetch(redis: Any) -> Published | None:
    """The published ruleset, if any."""
    return decode(await redis.get(ACTIVE_KEY))


def decode(raw: bytes | None) -> Published | None:
    return msgspec.json.decode(raw, type=Published) if raw else None


class RulesWatcher:
    """Keeps a pipeline on the published ruleset (``holder.rules`` / ``holder.switch_rules``)."""

    def __init__(self, redis: Any, holder: Any) -> None:
        self.redis = redis
        self.holder = holder
        self._seen: tuple[str, float] | None = None

    async def poll(self) -> bool:
        """Switch to a newly published ruleset; True if the holder's rules changed."""
        published = await fetch(self.redis)
        if published is None or (published.version, published.pushed_at) == self._seen:
            return False
        self._seen = (published.version, published.pushed_at)
        if published.version == self.holder.rules.version:
            return False
        try:
            compiled: CompiledRuleset = await asyncio.to_thread(
                lambda: compile_ruleset(parse_ruleset(published.text, published.source)))
        except RulesError as exc:
            log.error("published ruleset %s rejected, keeping %s: %s", published.version,
                      self.holder.rules.version, exc)
            return False
        self.holder.switch_rules(compiled)
        log.info("switched to ruleset %s (from %s)", compiled.version, published.source)
        return True
