"""Authentication and admission of the HTTP ingest front door (``streams.ingest``).

- :class:`TokenStore`: bearer tokens → feed names, and each feed's grant
  (:class:`streams.ingest_feeds.FeedGrant`), read from a TOML or JSON file and re-read
  whenever the file changes (rotation without restart). Tokens are compared with
  :func:`hmac.compare_digest` against every known token (no early exit), and are never
  logged: every token the file has ever held is handed to ``on_tokens`` (the log
  redactor). A deleted or emptied file revokes every token (logged); a rewrite that does
  not parse keeps the previous tokens.
- :class:`InFlight`: the bounded number of admitted requests, globally and per feed
  (back-pressure: bounded memory, and one feed cannot take every slot).

The per-feed rate limit is :mod:`streams.ingest_ratelimit`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from churnwatch.core.errors import ConfigError
from streams.ingest_feeds import DEFAULT_GRANT, FeedGrant, parse_grants

log = logging.getLogger("churnwatch.ingest")

FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class TokensFile:
    """A parsed tokens file: token → feed, and the feeds' explicit grants."""

    tokens: dict[bytes, str] = field(default_factory=dict)
    grants: dict[str, FeedGrant] = field(default_factory=dict)


def read_tokens_file(path: Path, allow_empty: bool = False) -> TokensFile:
    """``{"tokens": {token: feed}, "feeds": {feed: grant}}`` from a ``.json`` file, else the
    TOML tables ``[tokens]`` and ``[feeds.<feed>]``. An empty file, or one without tokens,
    is a :class:`ConfigError` unless ``allow_empty`` (then: no tokens)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the ingest tokens file ({exc.strerror}). Fix: "
                          "set CHURNWATCH_INGEST_TOKENS_FILE to a readable file") from None
    if allow_empty and not raw.strip():
        return TokensFile()
    try:
        data = (json.loads(raw) if path.suffix.lower() == ".json"
                else tomllib.loads(raw.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        # the message may quote file content (a token): keep only the position
        where = f" at line {exc.lineno}" if hasattr(exc, "lineno") else ""
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}"
                          f"{where}. Fix the syntax") from None
    table = data.get("tokens") if isinstance(data, dict) else None
    if allow_empty and isinstance(data, dict) and not table:
        return TokensFile()
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
    return TokensFile(tokens, parse_grants(path, data.get("feeds")))


def parse_tokens(path: Path) -> dict[bytes, str]:
    """The tokens of a tokens file (token → feed): :func:`read_tokens_file`'s ``tokens``."""
    return read_tokens_file(path).tokens


class TokenStore:
    """Bearer token → feed name and grant, re-read when the file's mtime/size/inode changes.

    A rewrite that does not parse keeps the previous tokens (logged without content), so a
    half-written file during rotation never locks every feed out; a deleted or empty file
    (or one whose ``[tokens]`` table is empty) revokes them all. Rotate by writing a new file
    and renaming it over the old one.
    """

    def __init__(self, path: Path, check_every_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_tokens: Callable[[Iterable[str]], None] | None = None) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self.clock = clock
        self.on_tokens = on_tokens
        self._file = read_tokens_file(self.path)
        self._signature = self._stat()
        self._checked = clock()
        self._seen: set[bytes] = set()
        self._learn()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _learn(self) -> None:
        new = set(self._file.tokens) - self._seen
        if new and self.on_tokens is not None:
            self.on_tokens(t.decode("utf-8", "surrogateescape") for t in new)
        self._seen |= new

    @property
    def feeds(self) -> set[str]:
        return set(self._file.tokens.values())

    def grant(self, feed: str) -> FeedGrant:
        """What ``feed`` may send (the default grant unless the file has ``[feeds.<feed>]``)."""
        return self._file.grants.get(feed, DEFAULT_GRANT)

    def reload_if_changed(self) -> None:
        now = self.clock()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        signature = self._stat()
        if signature == self._signature:
            return
        if signature is None:
            self._file, self._signature = TokensFile(), None
            log.warning("ingest tokens file %s is gone: every ingest token is revoked",
                        self.path)
            return
        try:
            parsed = read_tokens_file(self.path, allow_empty=True)
        except ConfigError as exc:
            log.warning("keeping the previous ingest tokens: %s", exc)
            return
        self._file, self._signature = parsed, signature
        self._learn()
        if parsed.tokens:
            log.info("ingest tokens reloaded from %s: %d tokens", self.path, len(parsed.tokens))
        else:
            log.warning("ingest tokens file %s holds no token: every ingest token is revoked",
                        self.path)

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
        for token, feed in self._file.tokens.items():  # constant time per token, no early exit
            if hmac.compare_digest(candidate, token):
                found = feed
        return found


class InFlight:
    """At most ``limit`` admitted requests at once, and at most ``per_feed`` of one feed;
    beyond that callers get 503."""

    def __init__(self, limit: int, per_feed: int | None = None) -> None:
        self.limit = limit
        self.per_feed = min(limit, per_feed or limit)
        self.count = 0
        self.by_feed: dict[str, int] = {}

    def try_acquire(self, feed: str) -> str | None:
        """None when admitted (call :meth:`release`), else which cap is full."""
        if self.count >= self.limit:
            return "global"
        held = self.by_feed.get(feed, 0)
        if held >= self.per_feed:
            return "feed"
        self.count += 1
        self.by_feed[feed] = held + 1
        return None

    def release(self, feed: str) -> None:
        self.count -= 1
        held = self.by_feed[feed] - 1
        if held:
            self.by_feed[feed] = held
        else:
            del self.by_feed[feed]
