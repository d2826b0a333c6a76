"""Comparing a worker's stored features with the offline oracle's."""

from __future__ import annotations

import asyncio

import numpy as np

from features.store import FeatureStore
from tests.support.redis_target import RedisTarget


async def read_features(target: RedisTarget, ids: list[str]) -> dict[str, np.ndarray]:
    client = target.client()
    try:
        return {sid: row for sid, (row, _) in (await FeatureStore(client).read(ids)).items()}
    finally:
        await client.aclose()


def assert_features_equal(target: RedisTarget, want: dict[str, np.ndarray]) -> None:
    ids = sorted(want)
    got = asyncio.run(read_features(target, ids))
    assert sorted(got) == ids
    for sid in ids:
        assert np.array_equal(got[sid], want[sid], equal_nan=True), sid
