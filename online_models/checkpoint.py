"""Model checkpoints in Redis, so `inspect` and restarted workers score with the learned model.

Only workers write the checkpoint key: the store is trusted, hence pickle.
"""

from __future__ import annotations

import pickle
from typing import Any

from online_models.model import ChurnModel

CHECKPOINT_KEY = "cw:model:checkpoint"


def decode(blob: bytes | None) -> ChurnModel | None:
    return pickle.loads(blob) if blob else None  # noqa: S301 - our own checkpoint


async def load_model(redis: Any, key: str = CHECKPOINT_KEY) -> ChurnModel | None:
    """The latest checkpoint, if any (``redis.asyncio`` client)."""
    return decode(await redis.get(key))


class Checkpointer:
    """Writes a checkpoint whenever the model has learned something since the last one."""

    def __init__(self, redis: Any, model: ChurnModel, key: str = CHECKPOINT_KEY) -> None:
        self.redis = redis
        self.model = model
        self.key = key
        self._saved_at = model.labels_seen

    async def save_if_changed(self) -> bool:
        if self.model.labels_seen == self._saved_at:
            return False
        seen = self.model.labels_seen
        await self.redis.set(self.key, pickle.dumps(self.model))
        self._saved_at = seen
        return True
