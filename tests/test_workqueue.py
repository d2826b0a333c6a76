"""Team work queues on a real redis-server: routing, idempotent enqueue, consumer groups and
the reclaim of entries left pending by a dead consumer."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from alerting.alert import Action, Alert, to_json
from alerting.ledger import AlertLedger
from alerting.workqueue import TeamQueues, WorkItem
from churnwatch.infra.redis.writes import queue_writes

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000
HOUR = 3_600_000


def alert(n: int, *actions: Action) -> Alert:
    return Alert(alert_id=f"a{n}", subscriber_id=f"s{n}", ts=NOW - 1000, event_id=f"e{n}",
                 severity="high", score=0.9, rules=["r"], reasons=[], segment="consumer",
                 actions=list(actions), detected_at=NOW + n, model_version="m1",
                 ruleset_version="v1")


CALL = Action("call", "care", 24)
OFFER = Action("offer", "offers", 1.5)
FIX = Action("fix", "care", 72)


def run(redis_url: str, body) -> object:  # type: ignore[no-untyped-def]
    async def go() -> object:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await body(client, TeamQueues(client))
        finally:
            await client.aclose()

    return asyncio.run(go())


async def fields(client: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    return [f for _, f in await client.xrange(stream)]


def entry(a: Alert, action: Action, deadline_ms: int) -> dict[bytes, bytes]:
    """A queued action's fields: what the team routes on, and the action, not the alert."""
    return {b"alert_id": a.alert_id.encode(), b"action_id": action.id.encode(),
            b"team": action.team.encode(), b"deadline_ms": str(deadline_ms).encode(),
            b"subscriber_id": a.subscriber_id.encode(), b"event_id": a.event_id.encode(),
            b"severity": a.severity.encode(), b"detected_at": str(a.detected_at).encode(),
            b"action": to_json(action)}


def test_entries_land_in_their_team_streams_once(redis_url: str) -> None:
    a1, a2 = alert(1, CALL, OFFER), alert(2, FIX)

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        assert await q.send([a1, a2], [to_json(a1), to_json(a2)]) == 3
        assert await fields(client, "cw:queue:care") == [
            entry(a1, CALL, NOW + 1 + 24 * HOUR), entry(a2, FIX, NOW + 2 + 72 * HOUR)]
        assert await fields(client, "cw:queue:offers") == [
            entry(a1, OFFER, NOW + 1 + 90 * 60_000)]
        # a re-send (and a duplicate inside one call) adds nothing; a new alert still lands
        a3 = alert(3, OFFER)
        assert await q.send([a1, a2, a1, a3],
                            [to_json(a1), to_json(a2), to_json(a1), to_json(a3)]) == 1
        assert await client.xlen("cw:queue:care") == 2
        assert [f[b"alert_id"] for f in await fields(client, "cw:queue:offers")] == [b"a1", b"a3"]
        guard = q.guard("care", "a1", "call")
        assert guard == "cw:{cw:queue:care}:action:a1:call"
        assert 30 * 86_400 - 5 <= await client.ttl(guard) <= 30 * 86_400
        assert await q.send([], []) == 0
        assert await q.send([alert(4)], [to_json(alert(4))]) == 0  # no actions, no entries

    run(redis_url, body)


def test_failed_xadd_leaves_no_guard(redis_url: str) -> None:
    """The guard is set only with its entry: after a failure, a re-send queues it."""
    a1 = alert(1, CALL)

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        await client.set("cw:queue:care", "not a stream")
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await q.send([a1], [to_json(a1)])
        assert await client.exists(q.guard("care", "a1", "call")) == 0
        await client.delete("cw:queue:care")
        assert await q.send([a1], [to_json(a1)]) == 1
        assert await client.xlen("cw:queue:care") == 1

    run(redis_url, body)


def test_consumer_group_claim_and_ack(redis_url: str) -> None:
    alerts = [alert(n, CALL) for n in range(5)]

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        await q.send(alerts[:2], [to_json(a) for a in alerts[:2]])
        await q.ensure_group("care", "tools")
        await q.ensure_group("care", "tools")  # idempotent
        await q.send(alerts[2:], [to_json(a) for a in alerts[2:]])
        first = await q.claim("care", "tools", "c1", count=3)
        assert [(i.alert_id, i.action_id, i.team, i.deadline_ms) for i in first] == [
            (f"a{n}", "call", "care", NOW + n + 24 * HOUR) for n in range(3)]
        assert (first[0].subscriber_id, first[0].event_id, first[0].severity,
                first[0].detected_at, first[0].action) == ("s0", "e0", "high", NOW, CALL)
        rest = await q.claim("care", "tools", "c2", count=10)
        assert [i.alert_id for i in rest] == ["a3", "a4"]
        assert await q.claim("care", "tools", "c2", count=10) == []
        assert await q.pending("care", "tools") == 5
        assert await q.ack("care", "tools", [i.id for i in first]) == 3
        assert await q.ack("care", "tools", [i.id for i in first]) == 0
        assert await q.ack("care", "tools", []) == 0
        assert await q.pending("care", "tools") == 2
        assert await q.ack("care", "tools", [i.id for i in rest]) == 2
        assert await q.pending("care", "tools") == 0
        # a group created later on an empty team's stream waits for new entries
        await q.ensure_group("offers", "tools")
        assert await client.exists("cw:queue:offers") == 1
        assert await q.claim("offers", "tools", "c1", count=1, block_ms=50) == []

    run(redis_url, body)


def test_claim_blocks_until_an_entry_arrives(redis_url: str) -> None:
    a1 = alert(1, CALL)

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        await q.ensure_group("care", "tools")
        other = aioredis.Redis.from_url(redis_url)
        try:
            waiting = asyncio.create_task(q.claim("care", "tools", "c1", count=1, block_ms=5000))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            await TeamQueues(other).send([a1], [to_json(a1)])
            items = await asyncio.wait_for(waiting, 2)
        finally:
            await other.aclose()
        assert [(i.alert_id, i.action_id) for i in items] == [("a1", "call")]

    run(redis_url, body)


def test_dead_consumer_entries_are_reclaimed(redis_url: str) -> None:
    alerts = [alert(n, CALL) for n in range(4)]

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        await q.ensure_group("care", "tools")
        await q.send(alerts, [to_json(a) for a in alerts])
        taken = await q.claim("care", "tools", "dies", count=3)  # then never acks
        assert len(taken) == 3
        assert await q.reclaim_stuck("care", "tools", "rescuer", min_idle_ms=200) == []
        await asyncio.sleep(0.25)
        survivor = await q.claim("care", "tools", "survivor", count=10)
        assert [i.alert_id for i in survivor] == ["a3"]
        # only the dead consumer's idle entries move; the survivor's fresh one stays
        rescued = await q.reclaim_stuck("care", "tools", "rescuer", min_idle_ms=200)
        assert rescued == taken
        assert all(isinstance(i, WorkItem) for i in rescued)
        summary = await client.xpending("cw:queue:care", "tools")
        assert sorted((c["name"], c["pending"]) for c in summary["consumers"]) == [
            (b"rescuer", 3), (b"survivor", 1)]
        assert await q.ack("care", "tools", [i.id for i in rescued + survivor]) == 4
        assert await q.pending("care", "tools") == 0
        assert await q.reclaim_stuck("care", "tools", "rescuer", min_idle_ms=0) == []

    run(redis_url, body)


def test_reclaim_respects_count_across_pages(redis_url: str) -> None:
    alerts = [alert(n, CALL) for n in range(5)]

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        await q.ensure_group("care", "tools")
        await q.send(alerts, [to_json(a) for a in alerts])
        await q.claim("care", "tools", "dies", count=5)
        first = await q.reclaim_stuck("care", "tools", "r1", min_idle_ms=0, count=2)
        assert [i.alert_id for i in first] == ["a0", "a1"]
        second = await q.reclaim_stuck("care", "tools", "r2", min_idle_ms=0, count=10)
        assert [i.alert_id for i in second] == ["a0", "a1", "a2", "a3", "a4"]

    run(redis_url, body)


def test_an_entry_finds_its_alert_pending_delivered_or_not_at_all(redis_url: str) -> None:
    """The whole alert is read from the subscriber's ledger while its delivery is under way
    (the work queue is written before the alert is marked delivered), then from its recent
    alerts; once it is gone from both (trimmed, expired), the lookup says so."""
    a1, a2 = alert(1, CALL), alert(2, OFFER)

    async def body(client: aioredis.Redis, q: TeamQueues) -> None:
        ledger = AlertLedger(client, recent=1)
        pipe = client.pipeline(transaction=True)
        await queue_writes(pipe, await ledger.writes(
            {}, {"s1": [("e1", to_json(a1))], "s2": [("e2", to_json(a2))]}))
        await pipe.execute()
        await q.send([a1, a2])
        await q.ensure_group("care", "t")
        await q.ensure_group("offers", "t")
        [i1] = await q.claim("care", "t", "c")
        [i2] = await q.claim("offers", "t", "c")
        assert await q.alert(i1) == to_json(a1)  # pending
        pipe = client.pipeline(transaction=True)
        await queue_writes(pipe, await ledger.delivered_writes(
            [("s1", "e1", to_json(a1)), ("s2", "e2", to_json(a2))]))
        await pipe.execute()
        assert await client.hlen("cw:{s1}:ledger") == 0
        assert await q.alert(i1) == to_json(a1)  # delivered: the recent alerts
        assert await q.alert(i2) == to_json(a2)
        # a newer alert of s2 pushes a2 out of its recent alerts (1 kept here)
        newer = msgspec.structs.replace(alert(3, CALL), subscriber_id="s2", event_id="e3")
        pipe = client.pipeline(transaction=True)
        await queue_writes(pipe, await ledger.writes({}, {"s2": [("e3", to_json(newer))]}))
        await queue_writes(pipe, await ledger.delivered_writes([("s2", "e3", to_json(newer))]))
        await pipe.execute()
        assert await q.alert(i2) is None

    run(redis_url, body)
