"""Redis writes described as values.

A batch's collaborators (the feature store, the alert ledger, the silence index, the risk
history, the learner's example stream) say *what* to write as a list of :data:`Write`
values; one owner (``streams.commit.BatchCommit``) decides *how*: on which pipeline, in
which transaction, fenced or not, and re-sends them when a reply is lost. No collaborator
holds a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from churnwatch.infra.redis.script_router import ScriptRouter

__all__ = ["Command", "ScriptCalls", "Write", "queue_writes", "single_redis_commands"]


@dataclass(frozen=True, slots=True)
class Command:
    """One Redis command with its arguments as sent, e.g. ``Command("ZADD", key, "GT", 5, m)``."""

    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", args)


@dataclass(frozen=True, slots=True)
class ScriptCalls:
    """A registered Lua script, run once per ``(node, keys, args)`` call: one call on a
    single Redis, one per node on a Redis Cluster (``router.split`` groups the keys)."""

    router: ScriptRouter
    script: Any
    calls: tuple[tuple[Any, Sequence[Any], Sequence[Any]], ...]


Write = Union[Command, ScriptCalls]


async def queue_writes(pipe: Any, writes: Iterable[Write]) -> None:
    """Queue ``writes`` in order on ``pipe`` (the caller executes it). On a cluster a
    script's calls go out at once, one per node (see ``ScriptRouter.run``)."""
    for write in writes:
        if isinstance(write, Command):
            pipe.execute_command(*write.args)
        elif write.calls:
            await write.router.run(write.script, write.calls, pipe=pipe)


def single_redis_commands(writes: Iterable[Write]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """``writes`` for a single Redis as plain commands, in order (a script call becomes an
    ``EVALSHA``), and the scripts they run (to be loaded if Redis lacks them)."""
    commands: list[tuple[Any, ...]] = []
    scripts: dict[str, Any] = {}
    for write in writes:
        if isinstance(write, Command):
            commands.append(write.args)
            continue
        scripts.setdefault(write.script.sha, write.script)
        commands += [("EVALSHA", write.script.sha, len(keys), *keys, *args)
                     for _, keys, args in write.calls]
    return commands, list(scripts.values())
