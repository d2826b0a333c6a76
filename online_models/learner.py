"""The fleet's one learner: labelled examples in, published model versions out.

Workers append the examples their batches resolve to one Redis stream (``examples``) in the
batch's commit round trip. One worker at a time — the holder of a Redis lock with a TTL,
renewed on every step — reads the stream in order, drops examples it has already learned
(same id: a batch whose append landed but whose commit did not, replayed; see
:class:`~online_models.dedup.DedupWindow`), scores each one before learning it (progressive
validation), and publishes a checkpoint with the stream position every ``publish_every_s``,
its dedup window beside it — or sooner, as soon as the labels learned since the last version
reach ``publish_growth`` times the labels that version had learned: a model that learns fast
(at go-live, or catching up a backlog) then reaches the scorers within a step, while a model
that has learned N labels publishes early at most ~log(N)/log(1 + growth) times in all. If it dies, another worker takes the lock and resumes
from the last published head, so every example is learned once in the published lineage.
Publishing is fenced (lock owner and expected head, see publish.lua): a learner that lost
the lock cannot fork the lineage. Every worker scores with the *active* version
(:class:`ModelWatcher`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from churnwatch.core.keys import Keys
from churnwatch.core.units import HOUR_MS
from churnwatch.infra.redis.writes import Command
from churnwatch.infra.runtime.metrics import Metrics
from online_models.dedup import DedupWindow, fingerprints
from online_models.model import MAX_ATTRS, ChurnModel, with_derived
from online_models.quality import ProgressiveValidation
from online_models.snapshots import Example, model_features
from online_models.versions import Checkpoint, ModelFormatError, ModelVersions

log = logging.getLogger("churnwatch.learner")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Example])
_EXTEND = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"""


def example_writes(keys: Keys, examples: Sequence[Example]) -> list[Command]:
    """One stream entry holding a batch's examples (none without examples)."""
    if not examples:
        return []
    return [Command("XADD", keys.model("examples"), "*", "x",
                    _encoder.encode(list(examples)))]


def example_input(example: Example) -> dict[str, float]:
    """An example as the model's input dict (as ``model.model_input`` builds it)."""
    x = model_features(example.values)
    for name, value in example.attrs.items():
        x[f"attr_{name}"] = float(value)
    return with_derived(x)


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class Learner:
    """Call :meth:`step` periodically on every worker; only the lock holder learns."""

    def __init__(self, redis: Any, versions: ModelVersions, metrics: Metrics, owner: str, *,
                 lock_ms: int = 30_000, page: int = 500, publish_every_s: float = 10.0,
                 auto_promote: bool = True, keep_versions: int = 200,
                 dedup_window_ms: int = HOUR_MS, dedup_capacity: int = 262_144,
                 clock: Callable[[], float] = time.time,
                 model_factory: Callable[[], ChurnModel] = ChurnModel,
                 slice_s: float = 0.005, max_attrs: int = MAX_ATTRS,
                 allowed_attrs: Sequence[str] | None = None,
                 publish_growth: float = 0.0) -> None:
        self.redis = redis
        self.versions = versions
        self.keys = versions.keys
        self.metrics = metrics
        self.owner = owner
        self.lock_ms = lock_ms
        self.page = page
        self.publish_every_s = publish_every_s
        self.publish_growth = publish_growth
        self.auto_promote = auto_promote
        self.keep_versions = keep_versions
        self.dedup_window_ms = dedup_window_ms
        self.dedup_capacity = dedup_capacity
        self.clock = clock
        self.model_factory = model_factory
        self.slice_s = slice_s  # longest stretch of learning before the event loop gets a turn
        self.attr_limits = (max_attrs, allowed_attrs)  # see ChurnModel.limit_attrs
        self.checkpoint: Checkpoint | None = None
        self.dedup: DedupWindow | None = None  # allocated while this worker leads
        self.head: str | None = None
        self.quality = ProgressiveValidation(model_factory(), metrics.registry)
        self.unpublished = 0
        self.fresh = 0  # labels learned since the last version (or since resuming)
        self._published_labels = 0  # labels the last version (or the resumed one) had learned
        self._published_at = 0.0
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)
        self.handed_over = False
        self._stepping = asyncio.Lock()  # a step and the hand-over, one at a time

    @property
    def leading(self) -> bool:
        return self.checkpoint is not None

    async def step(self, publish: bool | None = None) -> int:
        """Renew (or take) the lock, learn what is new, publish when due (or when ``publish``
        is true); returns the examples learned. Nothing after :meth:`hand_over`."""
        async with self._stepping:
            if self.handed_over:
                return 0
            return await self._step(publish)

    async def _step(self, publish: bool | None) -> int:
        if not await self._hold_lock():
            if self.checkpoint is not None:
                log.info("learner lock lost; another worker learns now")
            self.checkpoint = self.dedup = None
            return 0
        if self.checkpoint is None:
            await self._restore()
        learned = await self._learn()
        self.fresh += learned
        if self.unpublished and (publish or (publish is None and self._due())):
            await self.publish()
        return learned

    async def hand_over(self) -> None:
        """Stop learning for good (the worker stops): publish what was learned since the
        last version, then release the lock, so that another worker takes over at its next
        step and resumes from here, instead of waiting out ``lock_ms`` and then learning
        the examples again meanwhile appended (a burst on its event loop, under live
        traffic). A step cancelled mid-page left nothing to publish: the successor
        resumes from the head."""
        self.handed_over = True  # a step under way stops after its page
        async with self._stepping:
            try:
                if self.checkpoint is not None and self.unpublished:
                    await self.publish()
            finally:
                self.checkpoint = self.dedup = None
                await self._release(keys=[self.keys.model("learner")], args=[self.owner])

    def _due(self) -> bool:
        """Is a version due: ``publish_every_s`` since the last one, or the labels learned
        since then ``publish_growth`` times those it had (any, after a version with none)?"""
        if self.clock() - self._published_at >= self.publish_every_s:
            return True
        return self.publish_growth > 0 and self.fresh > 0 and \
            self.fresh >= self.publish_growth * self._published_labels

    async def _hold_lock(self) -> bool:
        lock = self.keys.model("learner")
        if await self.redis.set(lock, self.owner, nx=True, px=self.lock_ms):
            return True
        return bool(await self._extend(keys=[lock], args=[self.owner, self.lock_ms]))

    async def _restore(self) -> None:
        self.head = await self.versions.head()
        checkpoint = await self._load(self.head) if self.head else None
        resumed = checkpoint is not None
        if checkpoint is None:
            checkpoint = await self._fallback() or Checkpoint(self.model_factory())
        self.dedup = await self._restore_dedup() if resumed else DedupWindow(
            self.dedup_window_ms, self.dedup_capacity)
        checkpoint.model.limit_attrs(*self.attr_limits)
        self.checkpoint = checkpoint
        self.quality.model = checkpoint.model
        self.unpublished = self.fresh = 0
        self._published_labels = sum(checkpoint.model.label_counts())
        self._published_at = self.clock()
        log.info("learner: resuming version %s after stream entry %s",
                 self.head if resumed else checkpoint.model.version, checkpoint.offset)

    async def _load(self, version: str) -> Checkpoint | None:
        """``version``'s checkpoint; None if its value is refused (not a model document:
        logged and counted by :class:`ModelVersions`)."""
        try:
            return await self.versions.load(version)
        except ModelFormatError:
            return None

    async def _fallback(self) -> Checkpoint | None:
        """Without a head, the active version. A refused head is not learned on: the
        learner resumes from the newest version it can read (None: a new model), and its
        next publish replaces the head (still fenced on it)."""
        if not self.head:
            active = await self.versions.active()
            return await self._load(active) if active else None
        for row in reversed(await self.versions.list()):
            if row["version"] != self.head and not self.versions.refused(row["version"]):
                checkpoint = await self._load(row["version"])
                if checkpoint is not None:
                    return checkpoint
        return None

    async def _restore_dedup(self) -> DedupWindow:
        """The window published with the head (empty if none was)."""
        blob = await self.versions.dedup()
        if blob:
            return DedupWindow.decode(blob, self.dedup_window_ms, self.dedup_capacity)
        return DedupWindow(self.dedup_window_ms, self.dedup_capacity)

    async def _learn(self) -> int:
        key = self.keys.model("examples")
        learned = 0
        while True:
            assert self.checkpoint is not None
            entries = await self.redis.xrange(key, min=f"({self.checkpoint.offset}",
                                              count=self.page)
            try:
                learned += await self._learn_page(entries)
            except BaseException:  # cancelled mid-page: the window is ahead of the model
                self.checkpoint = self.dedup = None  # resume from the head next time
                raise
            if len(entries) < self.page or self.handed_over:
                return learned

    async def _learn_page(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """Learn one page of stream entries; the dedup window admits the page at once."""
        checkpoint, dedup = self.checkpoint, self.dedup
        assert checkpoint is not None and dedup is not None
        decoded = [(raw_id.decode(), _decoder.decode(fields[b"x"])) for raw_id, fields in entries]
        ids = [example.id for _, examples in decoded for example in examples]
        ms = np.repeat([_entry_ms(entry_id) for entry_id, _ in decoded],
                       [len(examples) for _, examples in decoded])
        early = dedup.early_rotations
        new = dedup.admit(fingerprints(ids), ms).tolist()
        if dedup.early_rotations > early:
            self._window_short(dedup.early_rotations - early, dedup.shortest_span_ms)
        learned, k = 0, 0
        turn = time.perf_counter() + self.slice_s
        for entry_id, examples in decoded:
            for example in examples:
                k += 1
                if not new[k - 1]:
                    self.metrics.examples_repeated.inc()
                    continue
                self.quality.observe(example_input(example), example.churned)
                self.metrics.labels.labels("churn" if example.churned else "active").inc()
                learned += 1
                if time.perf_counter() >= turn:  # the worker's batches wait while this runs
                    await asyncio.sleep(0)
                    turn = time.perf_counter() + self.slice_s
            checkpoint.offset = entry_id
        self.unpublished += len(entries)
        return learned

    def _window_short(self, rotations: int, span_ms: int | None) -> None:
        self.metrics.dedup_early_rotations.inc(rotations)
        log.warning("learner: the dedup window filled %d example ids in %.0f s of stream time, "
                    "less than model_dedup_window_s (%.0f s): older repeats are learned again. "
                    "Fix: raise model_dedup_capacity", self.dedup_capacity,
                    (span_ms or 0) / 1000, self.dedup_window_ms / 1000)

    async def publish(self) -> str | None:
        """Publish the learned state as a new version; None if this learner was fenced off."""
        checkpoint = self.checkpoint
        assert checkpoint is not None
        model = checkpoint.model
        version = await self.versions.next_id(model.version.split(".", 1)[0])
        parent, model.version = model.version, version
        positives, negatives = model.label_counts()
        meta = {"created_ms": int(self.clock() * 1000), "offset": checkpoint.offset,
                "positives": positives, "negatives": negatives, "parent": parent}
        assert self.dedup is not None
        result = await self.versions.publish(self.owner, self.head, version, checkpoint, meta,
                                             self.auto_promote, self.dedup.encode())
        if result != 1:
            model.version = parent
            log.warning("learner: publish of %s refused (%d); reloading", version, result)
            self.checkpoint = self.dedup = None
            return None
        self.head = version
        self.unpublished = self.fresh = 0
        self._published_labels = positives + negatives
        self._published_at = self.clock()
        await self.redis.xtrim(self.keys.model("examples"), minid=checkpoint.offset)
        await self.versions.prune(self.keep_versions)
        return version


class ModelWatcher:
    """Switches a pipeline to the active model version when it changes (poll). An active
    version whose value is refused (not a model document) is not switched to: the pipeline
    keeps scoring with its current model (:class:`ModelVersions` logs and counts it once)."""

    def __init__(self, versions: ModelVersions, switch: Callable[[ChurnModel], None],
                 current: str | None = None) -> None:
        self.versions = versions
        self.switch = switch
        self.current = current

    async def poll(self) -> bool:
        active = await self.versions.active()
        if not active or active == self.current or self.versions.refused(active):
            return False
        try:
            model = await self.versions.load_model(active)
        except ModelFormatError:
            return False
        self.switch(model)
        self.current = active
        return True
