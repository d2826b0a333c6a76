"""Writing described Redis writes the way the worker does: through ``BatchCommit``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerting.ledger import AlertLedger
from alerting.risk import RiskHistory
from online_models.learner import example_writes
from streams.commit import BatchCommit


async def commit(ledger: AlertLedger, entries: Mapping[str, Mapping[str, bytes]],
                 pending: Mapping[str, Sequence[tuple[str, bytes]]],
                 states: Any = None) -> None:
    """Store states and ledger decisions in one commit (unfenced: no consumer group)."""
    await BatchCommit(ledger.redis, lambda: ledger.writes(entries, pending, states),
                      cluster=ledger.router.cluster).send()


async def record_risk(risk: RiskHistory,
                      points: Mapping[str, Sequence[tuple[int, float, str]]]) -> None:
    """Store risk points in one commit."""
    await BatchCommit(risk.redis, lambda: risk.writes(points), cluster=risk.router.cluster).send()


async def append_examples(client: Any, keys: Any, examples: Sequence[Any]) -> None:
    """Append examples to the learner's stream as a batch commit does."""
    async def describe():  # type: ignore[no-untyped-def]
        return example_writes(keys, examples)

    await BatchCommit(client, describe, cluster=False).send()
