"""The batch commit's MSET packed in one pass (churnwatch/infra/redis/resp.py): the bytes hiredis would
send, and the same values stored through a real Redis as the plain client's MSET."""

from __future__ import annotations

import asyncio

import hiredis
import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.ledger import AlertLedger
from churnwatch.core.keys import Keys
from churnwatch.infra.redis.connect import connect, sends_packed
from churnwatch.infra.redis.resp import mset
from churnwatch.infra.settings_load import load_settings
from features.values import StateValues

pairs = st.lists(st.tuples(st.text(min_size=1, max_size=12), st.binary(max_size=300)),
                 max_size=40, unique_by=lambda p: p[0])
from tests.support.commits import commit


def _values(items: list[tuple[str, bytes]]) -> tuple[list[str], bytes, np.ndarray]:
    off = np.zeros(len(items) + 1, np.int64)
    np.cumsum([len(v) for _, v in items], out=off[1:])
    return [k for k, _ in items], b"".join(v for _, v in items), off


@settings(max_examples=200, deadline=None)
@given(pairs)
def test_packed_mset_is_what_hiredis_packs(items: list[tuple[str, bytes]]) -> None:
    names, raw, off = _values(items)
    packed = mset(names, raw, off)
    stored = [x for name, value in items if value for x in (name, value)]
    if not stored:
        assert packed is None
    else:
        assert packed is not None
        assert bytes(packed.chunk) == hiredis.pack_command(("MSET", *stored))


def test_only_hiredis_packing_clients_send_packed_commands() -> None:
    assert sends_packed(connect(load_settings(redis_url="redis://127.0.0.1:7000/0")))
    assert not sends_packed(aioredis.Redis.from_url("redis://127.0.0.1:7000/0"))
    assert not sends_packed(connect(load_settings(redis_url="redis://127.0.0.1:7000/0",
                                                  redis_cluster=True)))


@pytest.mark.integration
def test_a_commit_stores_the_same_values_packed_or_not(redis_url: str) -> None:
    items = {"é-1": b"\x01\x00\xff" * 100, "+44 7911": b"", "b": b"\r\n$3\r\n", "c": b"x"}
    names, raw, off = _values(list(items.items()))

    async def go(client: aioredis.Redis, keys: Keys) -> list[bytes | None]:
        values = StateValues(names, raw, off, np.zeros(len(names), np.int64))
        await commit(AlertLedger(client, keys), {}, {}, states=values)
        got = await client.mget(keys.states(names))
        await client.aclose()
        return got

    packed = asyncio.run(go(connect(load_settings(redis_url=redis_url)), Keys("packed")))
    plain = asyncio.run(go(aioredis.Redis.from_url(redis_url), Keys("plain")))
    expected = [value or None for value in items.values()]
    assert packed == plain == expected
