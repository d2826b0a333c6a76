"""The per-feed rate limit of the HTTP ingest, shared by every ingest replica through Redis.

Built on the ``limits`` library's sliding-window counter: a feed may send ``burst`` events
per window of ``burst / rate`` seconds (at least 1 s), so its average stays at ``rate``
events/s. With ``redis_url`` set (the workers' Redis), the counters live there under
``<prefix>:ingest-rate:`` and every ingest process draws on the same budget: N replicas
behind a load balancer admit ``rate``, not N × ``rate``. Without it the counters are in
process memory (one ingest process, or a documented N × ``rate``).

If Redis fails, the limiter falls back to in-process counters for that request (logged
once per outage): rate limiting stays on (per process) and ingest keeps serving.
"""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import urlparse

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

log = logging.getLogger("churnwatch.ingest")


def limits_uri(redis_url: str, cluster: bool = False) -> str:
    """The ``limits`` storage URI of a churnwatch Redis URL (``redis://``, ``rediss://``,
    ``unix://``)."""
    scheme = urlparse(redis_url).scheme
    if scheme == "unix":
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    if cluster:
        return f"async+{scheme}+cluster://" + redis_url.split("://", 1)[1].split("/", 1)[0]
    return "async+" + redis_url


class FeedRateLimiter:
    """``rate`` events/s per feed with a ``burst``; ``rate`` 0 disables limiting."""

    def __init__(self, rate: float, burst: int, redis_url: str = "", cluster: bool = False,
                 prefix: str = "cw", timeout_s: float = 2.0) -> None:
        self.rate = rate
        self.window_s = max(1, round(burst / rate)) if rate > 0 else 1
        self.item = RateLimitItemPerSecond(max(1, burst), self.window_s, namespace="feed")
        self.shared = bool(redis_url)
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._storage: Storage | None = None
        if redis_url:
            self._storage = storage_from_string(
                limits_uri(redis_url, cluster), implementation="redispy", wrap_exceptions=True,
                key_prefix=f"{prefix}:ingest-rate", socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s)
        self._shared = (SlidingWindowCounterRateLimiter(self._storage) if self._storage
                        else None)
        self._outage = False

    async def retry_after(self, feed: str, n: int) -> int:
        """0 if ``n`` events may pass now (and charges them), else whole seconds to wait.

        A request larger than the burst is charged the whole burst (it must then wait for a
        full window), so a single big request is never refused forever.
        """
        if self.rate <= 0:
            return 0
        cost = min(n, self.item.amount)
        limiter = self._shared or self._local
        try:
            if await limiter.hit(self.item, feed, cost=cost):
                self._recovered()
                return 0
            stats = await limiter.get_window_stats(self.item, feed)
            self._recovered()
        except StorageError as exc:
            if not self._outage:
                self._outage = True
                log.warning("ingest rate limit: Redis unavailable (%s); limiting per process "
                            "until it answers", type(exc.storage_error).__name__)
            if await self._local.hit(self.item, feed, cost=cost):
                return 0
            stats = await self._local.get_window_stats(self.item, feed)
        wait = stats.reset_time - time.time()
        return min(self.window_s, max(1, math.ceil(wait)))

    def _recovered(self) -> None:
        if self._outage and self._shared is not None:
            self._outage = False
            log.info("ingest rate limit: Redis answers again; the limit is fleet-wide again")

    async def close(self) -> None:
        """Close the Redis connections (if any)."""
        if self._storage is not None:
            bridge = getattr(self._storage, "bridge", None)
            client = bridge.get_connection() if bridge is not None else None
            if client is not None:
                await client.aclose()
