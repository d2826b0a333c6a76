"""Runs a batch's Lua scripts on a single Redis or on a Redis Cluster.

A batch script (the feature read, the commit, the delivery marks) touches the keys of many
subscribers. Every key of one subscriber carries the ``{subscriber}`` hash tag, so one
subscriber's keys share a slot; different subscribers do not. :class:`ScriptRouter` splits a
batch into *groups* whose keys one script call may touch:

- single Redis: one group, so a stage stays exactly one script call (as before);
- Redis Cluster, every primary >= 7.0: one group per primary node; the script is sent with
  ``#!lua flags=allow-cross-slot-keys`` and its keys in ARGV (a cluster rejects declared
  keys of several slots; see ``CROSS_SLOT``), all served by that node;
- Redis Cluster with an older primary: one group per slot (no cross-slot scripts there).

On a cluster the calls go out as ``EVAL`` (no ``NOSCRIPT`` on a fresh or restarted node)
through one cluster pipeline, which sends each node's calls concurrently (a round trip of its
own: a batch commit then costs two round trips instead of one, see :meth:`ScriptRouter.run`). Each group is
atomic on its own; groups are not atomic together. That is enough because every effect of a
batch is per subscriber: a crash between two groups' commits leaves some subscribers
committed, whose replayed events are then duplicates (their pending alerts are re-sent), and
the others uncommitted, whose replay applies them — the same as the single-Redis recovery,
subscriber by subscriber.

After a cluster error (a slot moved, a node failed over), :meth:`invalidate` makes the next
split reload the slot map first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, ResponseError, TryAgainError

from churnwatch.core.errors import ChurnwatchError, RedisCommandError, RedisUnavailable

# A cross-slot script declares no keys (a cluster routes declared keys to one slot only): its
# keys come first in ARGV, after their count, and become KEYS again here. Touching every key
# with EXISTS before the script proper makes a key the node does not serve (a slot moved or
# migrating) fail the whole script before it writes anything.
CROSS_SLOT = """#!lua flags=allow-cross-slot-keys
local argv, n = ARGV, tonumber(ARGV[1])
local KEYS, ARGV = {}, {}
for i = 2, #argv do
  if i <= n + 1 then KEYS[i - 1] = argv[i] else ARGV[i - n - 1] = argv[i] end
end
for i = 1, n do redis.call("EXISTS", KEYS[i]) end
"""
_MOVED = ("non local key", "hash to the same slot")
CROSS_SLOT_MIN_VERSION = (7, 0)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` (or a pipeline of it) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster) or hasattr(client, "cluster_client")


class ScriptRouter:
    """Splits batch keys into script groups and runs a script once per group."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.cross_slot: bool | None = None if self.cluster else True
        self._stale = False

    def invalidate(self) -> None:
        """Reload the cluster's slot map before the next split (after a cluster error)."""
        self._stale = True

    async def _prepare(self) -> None:
        client = self.client
        await client.initialize()
        if self._stale:
            self._stale = False
            await client.nodes_manager.initialize()
        if self.cross_slot is None:
            infos = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
            versions = [tuple(int(x) for x in info["redis_version"].split(".")[:2])
                        for info in infos.values()]
            self.cross_slot = bool(versions) and min(versions) >= CROSS_SLOT_MIN_VERSION

    async def split(self, routing_keys: Sequence[str]) -> list[tuple[Any, list[int]]]:
        """Groups of indices into ``routing_keys`` (one key per unit, e.g. a subscriber's state
        key) that one script call may cover, each with its target node (None: single Redis).
        Order inside a group follows ``routing_keys``."""
        if not self.cluster:
            return [(None, list(range(len(routing_keys))))] if routing_keys else []
        await self._prepare()
        client = self.client
        groups: dict[Any, tuple[Any, list[int]]] = {}
        for i, key in enumerate(routing_keys):
            if self.cross_slot:
                node = client.get_node_from_key(key)
                ident: Any = node.name
            else:
                ident = client.keyslot(key)
                node = client.nodes_manager.get_node_from_slot(ident)
            groups.setdefault(ident, (node, []))[1].append(i)
        return list(groups.values())

    async def run(self, script: Any, calls: Sequence[tuple[Any, Sequence[Any], Sequence[Any]]],
                  pipe: Any = None) -> list[Any] | None:
        """Run ``script`` (a registered script) once per (node, keys, args) call; returns the
        results in order.

        With ``pipe`` on a single Redis the calls are only queued on it (the caller executes
        it) and None is returned. On a cluster the calls always go out at once, on their own
        pipeline and without redirections: a moved slot raises ``RedisUnavailable`` (retryable,
        after which the next split reloads the slot map) instead of being re-sent to a node
        that may not hold the group's other keys."""
        if not self.cluster:
            if pipe is not None:
                for _, keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)
                return None
            return [await script(keys=keys, args=args) for _, keys, args in calls]
        own = self.client.pipeline(transaction=False)
        for node, keys, args in calls:
            if self.cross_slot:
                own.execute_command("EVAL", CROSS_SLOT + script.script, 0, len(keys), *keys,
                                    *args, target_nodes=node)
            else:
                own.execute_command("EVAL", script.script, len(keys), *keys, *args,
                                    target_nodes=node)
        try:
            results = await own.execute(allow_redirections=False)
        except (ResponseError, RedisUnavailable, RedisCommandError) as exc:
            # (from a translating client, churnwatch.infra.redis.errors, the cause is redis-py's)
            cause = exc.__cause__ if isinstance(exc, ChurnwatchError) else exc
            if isinstance(cause, (AskError, TryAgainError)) or any(m in str(cause) for m in _MOVED):
                self.invalidate()
                raise RedisUnavailable(f"cluster slots moved: {cause}") from exc
            raise
        return None if pipe is not None else results

    def queue(self, pipe: Any, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Queue a script whose keys share one slot on ``pipe`` (a coroutine to await on a
        single Redis; on a cluster the call is queued as EVAL, never NOSCRIPT)."""
        if self.cluster:
            pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
            return _done()
        return script(keys=keys, args=args, client=pipe)


async def _done() -> None:
    return None
