"""Retrying Redis operations through an outage: one policy for the pipeline and the sinks.

A retryable error (``churnwatch.infra.redis.errors.is_retryable``: connection trouble,
loading, a read-only replica, out of memory, a moving cluster slot) is waited out with
exponential backoff and jitter (0.1 s doubling up to 5 s), forever: the batch waits for
Redis rather than losing or reordering anything. Each retry is counted under
``churnwatch_redis_errors_total{operation}``; anything else is raised at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from churnwatch.infra.redis.errors import is_retryable
from churnwatch.infra.runtime.metrics import Metrics

__all__ = ["redis_retries"]

log = logging.getLogger("churnwatch.pipeline")


def redis_retries(metrics: Metrics, operation: str,
                  on_retry: Callable[[], None] | None = None) -> AsyncRetrying:
    """The retries of one Redis ``operation``; ``on_retry`` runs before each wait (e.g. to
    reload a cluster's slot map)."""
    def before_sleep(state: RetryCallState) -> None:
        metrics.redis_errors.labels(operation).inc()
        if on_retry is not None:
            on_retry()
        error = state.outcome.exception() if state.outcome else None
        log.warning("redis unavailable (%s); retrying in %.1fs", type(error).__name__,
                    state.next_action.sleep if state.next_action else 0.0)

    return AsyncRetrying(retry=retry_if_exception(is_retryable), reraise=True,
                         wait=wait_exponential_jitter(initial=0.1, max=5),
                         before_sleep=before_sleep)
