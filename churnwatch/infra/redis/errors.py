"""Redis errors translated at the boundary, as httpx maps its transports' exceptions.

Clients made by :func:`churnwatch.infra.redis.connect.connect` raise churnwatch's errors
(``churnwatch.core.errors``): :class:`RedisUnavailable` and :class:`RedisOutOfMemory` are
retryable, :class:`RedisCommandError` is not. This module is the one place that knows
redis-py's exception classes and error texts. Two of them pass through untranslated: they
are control flow, not failures — ``WatchError`` (a transaction's watched keys changed: the
write fence decides what it means) and ``NoScriptError`` (redis-py loads the script and runs
it again).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rx

from churnwatch.core.errors import (
    ChurnwatchError,
    RedisCommandError,
    RedisOutOfMemory,
    RedisRefused,
    RedisUnavailable,
    RetryableError,
)

__all__ = ["WatchError", "is_retryable", "map_redis_errors", "refusal_line", "translate"]

WatchError = rx.WatchError

_PASSED = (rx.WatchError, rx.NoScriptError)
_UNAVAILABLE = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError,
                # Redis Cluster: a slot moved or is migrating, a failover is under way
                rx.AskError, rx.TryAgainError, rx.ClusterError, rx.SlotNotCoveredError)
# credentials or permissions refused: a misconfiguration, not an outage (nor retried)
_REFUSED = (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError)
_MOVED = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")


def translate(exc: BaseException) -> BaseException:
    """churnwatch's error for a redis-py error (``exc`` itself for anything else)."""
    if isinstance(exc, rx.OutOfMemoryError) or (
            # a Lua script that hits maxmemory: redis-py raises a plain ResponseError
            isinstance(exc, rx.ResponseError) and "-OOM " in str(exc)):
        return RedisOutOfMemory(str(exc))
    if isinstance(exc, _REFUSED):
        return RedisRefused(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, _UNAVAILABLE) or (
            isinstance(exc, rx.ResponseError) and str(exc).startswith(_MOVED)):
        return RedisUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, rx.RedisError) and not isinstance(exc, _PASSED):
        return RedisCommandError(f"{type(exc).__name__}: {exc}")
    return exc


@contextmanager
def map_redis_errors() -> Iterator[None]:
    """Raise churnwatch's error for a redis-py error raised inside (chained to it)."""
    try:
        yield
    except rx.RedisError as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def is_retryable(exc: BaseException) -> bool:
    """An outage worth waiting out, from a translating client or a plain redis-py one."""
    return isinstance(exc, RetryableError) or isinstance(translate(exc), RetryableError)


def refusal_line(exc: BaseException) -> str | None:
    """One line saying what a Redis connection or permission error means and how to fix it
    (never the password), or None if ``exc`` is not one."""
    if isinstance(exc, ChurnwatchError) and exc.__cause__ is not None:
        exc = exc.__cause__  # translated above
    if isinstance(exc, rx.AuthenticationError):
        return (f"Redis refused the credentials of CHURNWATCH_REDIS_URL "
                f"({str(exc).rstrip('.')}). Fix: put the right user and password in it, "
                f"redis://USER:PASSWORD@HOST:PORT/DB (percent-encode special characters)")
    if isinstance(exc, (rx.NoPermissionError, rx.AuthorizationError)):
        return (f"the Redis user of CHURNWATCH_REDIS_URL lacks a permission ({exc}). Fix: "
                f"grant it with the ACL line in docs/operations.md")
    if isinstance(exc, rx.ConnectionError):
        return (f"cannot reach Redis ({exc}). Fix: check CHURNWATCH_REDIS_URL and that Redis "
                f"is running and reachable")
    return None
