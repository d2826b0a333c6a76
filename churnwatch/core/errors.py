"""The exception hierarchy: every error churnwatch raises derives from ChurnwatchError."""


class ChurnwatchError(Exception):
    """Root of all churnwatch errors."""


class ConfigError(ChurnwatchError):
    """Invalid configuration: the message names the source, the key and the fix."""


class EventError(ChurnwatchError):
    """An event violates the contract; ``reason`` is short and safe to publish."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RulesError(ChurnwatchError):
    """An invalid ruleset or playbook: the message names the file, the rule and the fix."""


class StoreError(ChurnwatchError):
    """The feature store could not apply or read a batch."""


class RetryableError(ChurnwatchError):
    """An outage worth waiting out: the same operation may succeed if tried again later."""


class RedisUnavailable(RetryableError):
    """Redis cannot serve now: the connection failed or timed out, it is loading, a replica
    is read-only, or a Redis Cluster slot is moving."""


class RedisOutOfMemory(RedisUnavailable):
    """Redis refused a write at its ``maxmemory`` (also from inside a Lua script)."""


class RedisCommandError(StoreError):
    """Redis refused a command for another reason (a wrong type, a script error): a bug or a
    misconfiguration, not an outage; not retried."""


class RedisRefused(RedisCommandError):
    """Redis refused this client's credentials or a command's permission (ACL): a
    misconfiguration. Never retried; a worker stops rather than dead-letter its events."""


class FencedError(StoreError):
    """Another worker owns a partition of this batch now (this one stalled past its session
    or lost a rebalance): nothing of the batch was written; its records are re-read."""
