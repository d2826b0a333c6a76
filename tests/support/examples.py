"""Labelled examples for learner tests: every third one churned, told apart by one feature."""

from __future__ import annotations

from online_models.model import SNAPSHOT_FEATURES
from online_models.snapshots import Example


def examples(n: int, start: int) -> list[Example]:
    """``n`` examples with ids ``s<start>/<start>`` on: every third churned, with more
    complaints in its snapshot."""
    out = []
    for i in range(start, start + n):
        churned = i % 3 == 0
        values = [(5 if churned else 1) + i % 2 if name == "complaints_30d" else 0
                  for name in SNAPSHOT_FEATURES]
        out.append(Example(f"s{i}/{i}", f"s{i}", i, i + 1, churned, values, {}))
    return out
