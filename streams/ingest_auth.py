"""Authentication and limits of the HTTP ingest front door (``streams.ingest``).

- :class:`TokenStore`: bearer tokens → feed names, read from a TOML or JSON file and re-read
  whenever the file changes (rotation without restart). Tokens are compared with
  :func:`hmac.compare_digest` against every known token (no early exit), and are never logged.
- :class:`RateLimiter`: one token bucket per feed, in events per second.
- :class:`InFlight`: the bounded number of admitted requests (back-pressure: bounded memory).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from churnwatch.core.errors import ConfigError

log = logging.getLogger("churnwatch.ingest")

FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def parse_tokens(path: Path) -> dict[bytes, str]:
    """``{"tokens": {token: feed}}`` from a ``.json`` file, else the TOML table ``[tokens]``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the ingest tokens file ({exc.strerror}). Fix: "
                          "set CHURNWATCH_INGEST_TOKENS_FILE to a readable file") from None
    try:
        data = (json.loads(raw) if path.suffix.lower() == ".json"
                else tomllib.loads(raw.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        # the message may quote file content (a token): keep only the position
        where = f" at line {exc.lineno}" if hasattr(exc, "lineno") else ""
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}"
                          f"{where}. Fix the syntax") from None
    table = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ConfigError(f'{path}: no tokens. Fix: add a table like [tokens] "<token>" = '
                          '"<feed-name>" (JSON: {"tokens": {"<token>": "<feed-name>"}})')
    tokens: dict[bytes, str] = {}
    for n, (token, feed) in enumerate(table.items(), 1):
        if not isinstance(token, str) or not token or not isinstance(feed, str):
            raise ConfigError(f"{path}: token #{n}: token and feed must be non-empty strings")
        if not FEED_NAME.match(feed):
            raise ConfigError(f"{path}: token #{n}: feed name {feed!r} must match "
                              f"{FEED_NAME.pattern}")
        tokens[token.encode()] = feed
    return tokens


class TokenStore:
    """Bearer token → feed name, re-read when the file's mtime/size/inode changes.

    A rewrite that does not parse keeps the previous tokens (logged without content), so a
    half-written file during rotation never locks every feed out.
    """

    def __init__(self, path: Path, check_every_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self.clock = clock
        self._tokens = parse_tokens(self.path)
        self._signature = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def feeds(self) -> set[str]:
        return set(self._tokens.values())

    def reload_if_changed(self) -> None:
        now = self.clock()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        signature = self._stat()
        if signature is None or signature == self._signature:
            return
        try:
            tokens = parse_tokens(self.path)
        except ConfigError as exc:
            log.warning("keeping the previous ingest tokens: %s", exc)
            return
        self._tokens, self._signature = tokens, signature
        log.info("ingest tokens reloaded from %s: %d tokens", self.path, len(tokens))

    def feed_for(self, authorization: str | None) -> str | None:
        """The feed of an ``Authorization: Bearer <token>`` header, or None."""
        self.reload_if_changed()
        if not authorization:
            return None
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        candidate = presented.strip().encode("utf-8", "surrogateescape")
        found = None
        for token, feed in self._tokens.items():  # constant time per token, no early exit
            if hmac.compare_digest(candidate, token):
                found = feed
        return found


class TokenBucket:
    """``rate`` events per second with ``burst`` capacity."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, n: int, now: float) -> float:
        """Take ``n`` tokens; returns 0.0 on success, else seconds until they would be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class RateLimiter:
    """Per-feed token buckets; ``rate`` 0 disables limiting."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, feed: str, n: int) -> int:
        """0 if ``n`` events may pass now (and charges them), else whole seconds to wait.

        A request larger than the burst is charged the whole burst (it must then wait for a
        full bucket), so a single big request is never refused forever.
        """
        if self.rate <= 0:
            return 0
        now = self.clock()
        bucket = self._buckets.get(feed)
        if bucket is None:
            bucket = self._buckets[feed] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.take(min(n, int(self.burst)), now)
        return 0 if wait <= 0 else max(1, math.ceil(wait))


class InFlight:
    """At most ``limit`` admitted requests at once; beyond that callers get 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_acquire(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        self.count -= 1
