"""Alert severities, lowest first; a severity's rank is its position counted from 1."""

from __future__ import annotations

SEVERITIES = ("low", "medium", "high")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}
