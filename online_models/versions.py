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

A version is plain data (``online_models.model_state``: weights, scaler statistics, the
River version), validated when read; anything else under a version key (a pickle of an
earlier release, a planted value) is refused with :class:`ModelFormatError`, logged once per
version and counted (``churnwatch_model_versions_refused_total``), never unpickled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.keys import Keys
from churnwatch.infra.runtime.metrics import Metrics
from online_models import model_state
from online_models.model import ChurnModel
from online_models.model_state import ModelFormatError

log = logging.getLogger("churnwatch.model")

__all__ = ["Checkpoint", "ModelFormatError", "ModelVersions", "VersionError",
           "active_model_sync"]


class VersionError(ChurnwatchError):
    """An unknown model version, or nothing to roll back to."""


@dataclass
class Checkpoint:
    """A model and the stream position it has learned up to."""

    model: ChurnModel
    offset: str = "0-0"

    def encode(self) -> bytes:
        return model_state.encode(self.model, self.offset)

    @staticmethod
    def decode(blob: bytes, what: str = "model version") -> Checkpoint:
        """:class:`ModelFormatError` for anything but a model document."""
        return Checkpoint(*model_state.decode(blob, what))


_REFUSALS_REMEMBERED = 1024
# Store a version as the first head and active version, only on a store without either.
# KEYS: head, version, versions (hash), active; ARGV: version id, blob, metadata JSON
_INSTALL = """
if redis.call("EXISTS", KEYS[1]) == 1 or redis.call("EXISTS", KEYS[4]) == 1 then
  return 0
end
if not redis.call("SET", KEYS[2], ARGV[2], "NX") then
  return 0
end
redis.call("HSET", KEYS[3], ARGV[1], ARGV[3])
redis.call("SET", KEYS[1], ARGV[1])
redis.call("SET", KEYS[4], ARGV[1])
return 1
"""


class ModelVersions:
    """Reads and switches versions over a ``redis.asyncio`` client."""

    def __init__(self, redis: Any, keys: Keys = Keys(), metrics: Metrics | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.metrics = metrics
        self._refused: dict[str, None] = {}  # versions refused (and logged) by this process
        self._publish = redis.register_script(
            resources.files("online_models").joinpath("publish.lua").read_text())
        self._install = redis.register_script(_INSTALL)

    async def active(self) -> str | None:
        raw = await self.redis.get(self.keys.model("active"))
        return raw.decode() if raw else None

    async def head(self) -> str | None:
        raw = await self.redis.get(self.keys.model("head"))
        return raw.decode() if raw else None

    async def load(self, version: str) -> Checkpoint:
        """The checkpoint of ``version``: :class:`VersionError` if there is none,
        :class:`ModelFormatError` if the stored value is not a model document (logged and
        counted the first time this process meets that version)."""
        blob = await self._blob(version)
        try:
            return Checkpoint.decode(blob, f"model version {version!r} "
                                           f"({self.keys.model(f'v:{version}')})")
        except ModelFormatError as exc:
            self._report(version, exc)
            raise

    def _report(self, version: str, exc: ModelFormatError) -> None:
        if version in self._refused:
            return
        self._refused[version] = None
        if len(self._refused) > _REFUSALS_REMEMBERED:
            del self._refused[next(iter(self._refused))]
        log.error("%s", exc)
        if self.metrics is not None:
            self.metrics.versions_refused.inc()

    def refused(self, version: str) -> bool:
        """Whether this process has refused ``version`` (its value is not a model document)."""
        return version in self._refused

    async def dedup(self) -> bytes | None:
        """The learner's dedup window as published with its head (None: none published)."""
        return await self.redis.get(self.keys.model("dedup"))

    async def load_model(self, version: str) -> ChurnModel:
        """Only the model of ``version`` (a worker switching to it)."""
        return (await self.load(version)).model

    async def _blob(self, version: str) -> bytes:
        blob = await self.redis.get(self.keys.model(f"v:{version}"))
        if blob is None:
            raise VersionError(f"unknown model version {version!r}. Fix: pick one from "
                               "`churnwatch model list`")
        return blob

    async def load_active(self) -> Checkpoint | None:
        """The active version's checkpoint, if any."""
        version = await self.active()
        return await self.load(version) if version else None

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

    async def install(self, blob: bytes, created_ms: int) -> str | None:
        """Make a model document (``blob``, validated here: :class:`ModelFormatError`) the
        first version of a store that has none: head and active, so workers score with it and
        the learner resumes from it (from its stream position). Returns the version, or None
        when the store already has a head or an active version (nothing changed)."""
        checkpoint = Checkpoint.decode(blob, "model document to install")
        model = checkpoint.model
        positives, negatives = model.label_counts()
        meta = {"created_ms": created_ms, "offset": checkpoint.offset, "positives": positives,
                "negatives": negatives, "parent": None}
        k = self.keys.model
        done = await self._install(keys=[k("head"), k(f"v:{model.version}"), k("versions"),
                                         k("active")],
                                   args=[model.version, blob, orjson.dumps(meta)])
        return model.version if done else None

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
        await self.load(target)  # ModelFormatError: never make a refused value active
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
    """The active version's model over a synchronous client (worker start-up); None when
    there is none, or when its value is refused (logged: the worker starts with an empty
    model, and its model watcher reports and counts the refusal on its first poll)."""
    active = redis.get(keys.model("active"))
    blob = redis.get(keys.model(f"v:{active.decode()}")) if active else None
    if blob is None:
        return None
    try:
        return Checkpoint.decode(blob, f"active model version {active.decode()!r}").model
    except ModelFormatError as exc:
        log.warning("at start-up, scoring with an empty model: %s", exc)
        return None
