"""Model versions in Redis: immutable checkpoints, the learner's head and the active version.

A checkpoint is the model together with the examples-stream position it has learned up to,
so a learner that restarts resumes exactly where the published state ends. The ids of the
examples it learned recently (its dedup window, to drop a repeated append) are stored once,
beside the head (``dedup``), written with it by publish.lua: not in every version. Versions
are never overwritten.
The *active* version is what every worker scores with: by default each newly published
version becomes active (the model keeps learning in production); ``promote VERSION`` and
``rollback`` pin an operator's choice, ``promote latest`` follows the learner again.
Learning always continues on the learner's own lineage (its head).

Only churnwatch writes these keys: the store is trusted, hence pickle.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
import orjson

from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.keys import Keys
from online_models.model import ChurnModel

LEGACY_CHECKPOINT = "cw:model:checkpoint"  # single checkpoint of earlier releases


class VersionError(ChurnwatchError):
    """An unknown model version, or nothing to roll back to."""


_FORMAT = "checkpoint/3"  # (format, pickled model, offset)
_FORMAT_2 = "checkpoint/2"  # (format, pickled model, offset, msgpack {id: ms}) of earlier releases
_recent_decoder = msgspec.msgpack.Decoder(dict[str, int])


@dataclass
class Checkpoint:
    """A model and the stream position it has learned up to. ``recent`` (example id →
    stream entry ms) is only read from versions of earlier releases, which carried the
    learner's dedup window; it is never stored again."""

    model: ChurnModel
    offset: str = "0-0"
    recent: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The model pickled on its own inside the checkpoint, so a worker that only scores
        reads it without the rest (:meth:`decode_model`)."""
        return pickle.dumps((_FORMAT, pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL),
                             self.offset), protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def decode(blob: bytes) -> Checkpoint:
        value = pickle.loads(blob)  # noqa: S301 - our own checkpoint
        if _is_packed(value):
            model, offset = pickle.loads(value[1]), value[2]
            recent = _recent_decoder.decode(value[3]) if value[0] == _FORMAT_2 else {}
            return Checkpoint(model, offset, recent)
        return value if isinstance(value, Checkpoint) else Checkpoint(value)  # earlier formats

    @staticmethod
    def decode_model(blob: bytes) -> ChurnModel:
        """Only the model of an encoded checkpoint (what a scoring worker needs)."""
        value = pickle.loads(blob)  # noqa: S301 - our own checkpoint
        if _is_packed(value):
            return pickle.loads(value[1])
        return value.model if isinstance(value, Checkpoint) else value


def _is_packed(value: object) -> bool:
    return isinstance(value, tuple) and len(value) in (3, 4) and value[0] in (_FORMAT, _FORMAT_2)


class ModelVersions:
    """Reads and switches versions over a ``redis.asyncio`` client."""

    def __init__(self, redis: Any, keys: Keys = Keys()) -> None:
        self.redis = redis
        self.keys = keys
        self._publish = redis.register_script(
            resources.files("online_models").joinpath("publish.lua").read_text())

    async def active(self) -> str | None:
        raw = await self.redis.get(self.keys.model("active"))
        return raw.decode() if raw else None

    async def head(self) -> str | None:
        raw = await self.redis.get(self.keys.model("head"))
        return raw.decode() if raw else None

    async def load(self, version: str) -> Checkpoint:
        return Checkpoint.decode(await self._blob(version))

    async def dedup(self) -> bytes | None:
        """The learner's dedup window as published with its head (None: none published)."""
        return await self.redis.get(self.keys.model("dedup"))

    async def load_model(self, version: str) -> ChurnModel:
        """Only the model of ``version`` (a worker switching to it)."""
        return Checkpoint.decode_model(await self._blob(version))

    async def _blob(self, version: str) -> bytes:
        blob = await self.redis.get(self.keys.model(f"v:{version}"))
        if blob is None:
            raise VersionError(f"unknown model version {version!r}. Fix: pick one from "
                               "`churnwatch model list`")
        return blob

    async def load_active(self) -> Checkpoint | None:
        """The active version's checkpoint (or a legacy single checkpoint), if any."""
        version = await self.active()
        if version:
            return await self.load(version)
        blob = await self.redis.get(LEGACY_CHECKPOINT)
        return Checkpoint.decode(blob) if blob else None

    async def next_id(self, base: str) -> str:
        seq = await self.redis.incr(self.keys.model("seq"))
        return f"{base}.{seq}"

    async def publish(self, owner: str, expected_head: str | None, version: str,
                      checkpoint: Checkpoint, meta: dict[str, Any], promote: bool,
                      dedup: bytes = b"") -> int:
        """Store ``checkpoint`` as ``version`` and ``dedup`` (the learner's encoded dedup
        window) beside the head (see publish.lua for the return codes)."""
        k = self.keys.model
        return int(await self._publish(
            keys=[k("learner"), k("head"), k(f"v:{version}"), k("versions"), k("active"),
                  k("pinned"), k("history"), k("dedup")],
            args=[owner, expected_head or "", version, checkpoint.encode(),
                  orjson.dumps(meta), "1" if promote else "0", dedup]))

    async def list(self) -> list[dict[str, Any]]:
        """Every version's metadata, oldest first, with ``active`` / ``head`` flags."""
        raw = await self.redis.hgetall(self.keys.model("versions"))
        active, head = await self.active(), await self.head()
        rows = [{"version": v.decode(), **orjson.loads(m)} for v, m in raw.items()]
        rows.sort(key=lambda r: r.get("created_ms", 0))
        for row in rows:
            row["active"] = row["version"] == active
            row["head"] = row["version"] == head
        return rows

    async def promote(self, version: str) -> str:
        """Make ``version`` active and pin it; ``latest`` follows the learner's head again."""
        k = self.keys.model
        follow = version == "latest"
        target = await self.head() if follow else version
        if not target or not await self.redis.exists(k(f"v:{target}")):
            raise VersionError(f"unknown model version {version!r}. Fix: pick one from "
                               "`churnwatch model list`")
        previous = await self.active()
        pipe = self.redis.pipeline(transaction=True)
        if previous and previous != target:
            pipe.lpush(k("history"), previous)
            pipe.ltrim(k("history"), 0, 99)
        pipe.set(k("active"), target)
        if follow:
            pipe.delete(k("pinned"))
        else:
            pipe.set(k("pinned"), "1")
        await pipe.execute()
        return target

    async def rollback(self) -> str:
        """Re-activate (and pin) the version active before the current one."""
        k = self.keys.model
        previous = await self.redis.lpop(k("history"))
        if previous is None:
            raise VersionError("no earlier active version to roll back to")
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(k("active"), previous)
        pipe.set(k("pinned"), "1")
        await pipe.execute()
        return previous.decode()

    async def prune(self, keep: int) -> int:
        """Delete all but the newest ``keep`` versions, never the active, head or history."""
        rows = await self.list()
        if len(rows) <= keep:
            return 0
        k = self.keys.model
        protected = {r["version"] for r in rows if r["active"] or r["head"]}
        protected |= {v.decode() for v in await self.redis.lrange(k("history"), 0, -1)}
        doomed = [r["version"] for r in rows[:-keep] if r["version"] not in protected]
        if doomed:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(k("versions"), *doomed)
            pipe.delete(*(k(f"v:{v}") for v in doomed))
            await pipe.execute()
        return len(doomed)


def active_model_sync(redis: Any, keys: Keys = Keys()) -> ChurnModel | None:
    """The active version's model over a synchronous client (worker start-up)."""
    active = redis.get(keys.model("active"))
    blob = redis.get(keys.model(f"v:{active.decode()}")) if active else redis.get(
        LEGACY_CHECKPOINT)
    return Checkpoint.decode_model(blob) if blob else None
