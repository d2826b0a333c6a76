"""A watched transaction in two round trips: ``WATCH`` + reads, then ``MULTI`` … ``EXEC``.

redis-py runs a watched transaction one command at a time once ``WATCH`` is sent (each
read after it is a round trip), then checks the pipeline's scripts with ``SCRIPT EXISTS``
(another one) before the ``MULTI``/``EXEC``. A fenced batch commit (``streams.ownership``)
watches, reads the partitions' claims and offsets, and writes: five round trips. In the
worker each of them waits for the event loop's next turn, which comes between the CPU-bound
steps of the next batch, so the commit took longer than staging a batch and held the
worker back. :class:`WatchedTransaction` sends the watch, the reads and the script check
as one packet on one connection, and the transaction as a second one.

Hand-written (a measured hot path, see docs/benchmarks.md) on redis-py's connection API:
``pack_commands``, ``send_packed_command`` and ``read_response``. The replies are redis-py's
raw parsed replies (no response callbacks). A connection whose exchange was interrupted is
closed, never returned to the pool mid-reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from redis import exceptions as rx

from churnwatch.infra.redis.errors import WatchError, map_redis_errors

__all__ = ["WatchedTransaction"]

Args = Sequence[Any]


class WatchedTransaction:
    """One watched transaction on a connection taken from ``redis``'s pool (a single Redis).

    Use::

        async with WatchedTransaction(redis) as tx:
            replies = await tx.watch(keys, reads, scripts)   # round trip 1
            if go_on(replies):
                await tx.execute(commands)                   # round trip 2

    Leaving without :meth:`execute` unwatches the keys. :meth:`execute` raises
    :class:`~churnwatch.infra.redis.errors.WatchError` if a watched key changed (nothing
    ran), the first error of a command otherwise.
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._conn: Any = None
        self._watching = False
        self._in_step = True  # every reply of the last exchange was read

    async def __aenter__(self) -> Self:
        with map_redis_errors():
            self._conn = await self.redis.connection_pool.get_connection()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        conn, self._conn = self._conn, None
        pool = self.redis.connection_pool
        try:
            if not self._in_step:
                await conn.disconnect()  # replies may be left on it: never reuse it
            elif self._watching:
                with map_redis_errors():
                    await self._exchange(conn, [("UNWATCH",)])
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            self._watching = False
            await pool.release(conn)

    async def watch(self, keys: Sequence[str], reads: Sequence[Args] = (),
                    scripts: Sequence[Any] = ()) -> list[Any]:
        """``WATCH keys``, then ``reads`` (commands) in the same round trip; returns their
        replies. ``scripts`` (redis-py registered scripts the transaction will run by
        ``EVALSHA``) are checked in the same round trip and loaded if Redis lacks them."""
        shas = [s.sha for s in scripts]
        commands: list[Args] = [("WATCH", *keys), *reads]
        if shas:
            commands.append(("SCRIPT", "EXISTS", *shas))
        with map_redis_errors():
            self._watching = True
            replies = await self._exchange(self._conn, commands)
            _raise_first(replies[:1 + len(reads)])
            if shas:
                _raise_first(replies[-1:])
                missing = [s for s, found in zip(scripts, replies[-1]) if not found]
                if missing:  # a restarted or flushed Redis: rare, one more round trip
                    loaded = await self._exchange(
                        self._conn, [("SCRIPT", "LOAD", s.script) for s in missing])
                    _raise_first(loaded)
        return replies[1:1 + len(reads)]

    async def execute(self, commands: Sequence[Args]) -> list[Any]:
        """``MULTI``, ``commands``, ``EXEC`` in one round trip; returns the commands' replies."""
        with map_redis_errors():
            replies = await self._exchange(self._conn, [("MULTI",), *commands, ("EXEC",)])
            self._watching = False  # EXEC unwatches, whatever it answers
            queued, result = replies[:-1], replies[-1]
            if isinstance(result, rx.ExecAbortError):  # a command refused when queued
                _raise_first(queued)
                raise result
            if isinstance(result, Exception):
                raise result
            if result is None:
                raise WatchError("a watched key changed: the transaction did not run")
            _raise_first(result)
            return list(result)

    async def _exchange(self, conn: Any, commands: Sequence[Args]) -> list[Any]:
        """Send ``commands`` in one packet and read every reply (an error reply is returned
        as its exception, so that the replies after it are read too)."""
        self._in_step = False
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except rx.ResponseError as exc:  # read whole: the connection stays in step
                replies.append(exc)
        self._in_step = True
        return replies


def _raise_first(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
