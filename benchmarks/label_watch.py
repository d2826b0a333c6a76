"""What the label-burst benchmark (``benchmarks/bench_labels.py``) watches while the workers
learn a burst: their ``/metrics`` (examples appended and learned, the version each scores
with) and the versions the learner published in Redis; and the figures made of them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis

from benchmarks.bench_e2e import counts, scrape
from churnwatch.core.keys import Keys

Metrics = dict[str, list[tuple[str, dict[str, str], float]]]


def total(m: Metrics, family: str, **labels: str) -> int:
    """The sum of a counter family's ``_total`` samples (matching ``labels``)."""
    return int(sum(v for name, got, v in m.get(family, ()) if name.endswith("_total")
                   and all(got.get(k) == x for k, x in labels.items())))


def scoring_version(m: Metrics) -> str | None:
    """The version a worker scores with (its ``churnwatch_model_info`` gauge)."""
    return next((got["version"] for _, got, v in m.get("churnwatch_model_info", ()) if v == 1),
                None)


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


class BurstWatch:
    """Polls ``ports`` (the workers' metrics) and Redis every ``poll_s`` while a burst of
    ``labels`` labels is learned."""

    def __init__(self, redis_url: str, ports: Sequence[int], labels: int, poll_s: float,
                 keys: Keys | None = None) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.ports, self.labels, self.poll_s, self.keys = list(ports), labels, poll_s, (
            keys or Keys())
        self.samples: list[tuple[float, int, int]] = []  # (wall time, appended, learned)
        self.versions: dict[str, dict[str, Any]] = {}  # version → its published metadata
        self.scoring: list[dict[str, float]] = [{} for _ in ports]  # version → first seen
        self.current: list[str | None] = [None for _ in ports]
        self.last: list[Metrics] = [{} for _ in ports]  # the last good scrape of each

    def poll(self) -> tuple[int, int]:
        appended = learned = 0
        for i, port in enumerate(self.ports):
            m = scrape(port) or self.last[i]
            seen = time.time()
            self.last[i] = m
            appended += total(m, "churnwatch_model_examples")
            learned += total(m, "churnwatch_model_labels")
            version = scoring_version(m)
            self.current[i] = version
            if version is not None:
                self.scoring[i].setdefault(version, seen)
        for raw, meta in self.redis.hgetall(self.keys.model("versions")).items():
            self.versions.setdefault(raw.decode(), orjson.loads(meta))
        self.samples.append((time.time(), appended, learned))
        return appended, learned

    def head(self) -> str | None:
        raw = self.redis.get(self.keys.model("head"))
        return raw.decode() if raw else None

    def _held(self, version: str | None) -> int:
        meta = self.versions.get(version or "", {})
        return int(meta.get("positives", 0)) + int(meta.get("negatives", 0))

    def run(self, t0: float, max_s: float, stall_s: float,
            check_alive: Callable[[], None]) -> str:
        """Poll until every label is learned, published and scored with ("complete"), or
        ``max_s`` from ``t0`` ("capped"), or no progress for ``stall_s`` ("stalled")."""
        progress, last_progress = (-1, -1, -1), time.time()
        while True:
            tick = time.time()
            check_alive()
            appended, learned = self.poll()
            head = self.head()
            if (appended, learned, len(self.versions)) != progress:
                progress, last_progress = (appended, learned, len(self.versions)), tick
            if (appended >= self.labels and learned >= appended
                    and self._held(head) >= appended
                    and all(v == head for v in self.current)):
                return "complete"
            if tick - t0 > max_s:
                return "capped"
            if tick - last_progress > stall_s:
                return "stalled"
            time.sleep(max(0.0, self.poll_s - (time.time() - tick)))

    # ------------------------------------------------------------------ figures
    def _reached(self, column: int, value: int) -> float | None:
        return next((t for t, *row in self.samples if row[column - 1] >= value > 0),
                    None)

    def _rates(self, column: int, t0: float) -> dict[str, Any]:
        final = self.samples[-1][column] if self.samples else 0
        first = self._reached(column, 1)
        last = self._reached(column, final)
        return {"examples": final,
                "first_s": _round(first - t0 if first else None),
                "last_s": _round(last - t0 if last else None),
                "per_s": round(final / (last - t0)) if last and last > t0 else None,
                "per_s_from_first": round(final / (last - first))
                if last and first and last > first else None,
                "peak_per_s_5s": self._peak(column)}

    def _peak(self, column: int, window_s: float = 5.0) -> int | None:
        """The highest rate over any ``window_s`` of the samples."""
        best, j = None, 0
        for i, (t, *row) in enumerate(self.samples):
            while self.samples[j][0] < t - window_s:
                j += 1
            if j < i and t - self.samples[j][0] >= window_s * 0.8:
                rate = (row[column - 1] - self.samples[j][column]) / (t - self.samples[j][0])
                best = rate if best is None or rate > best else best
        return round(best) if best is not None else None

    def figures(self, t0: float) -> dict[str, Any]:
        appended, learned = self._rates(1, t0), self._rates(2, t0)
        learned["per_s_learner"] = learned.pop("per_s_from_first")
        rows, delays = [], []
        superseded = 0
        for version, meta in sorted(self.versions.items(), key=lambda kv: kv[1]["created_ms"]):
            created = meta["created_ms"] / 1000
            if created < t0:
                continue
            seen = [s.get(version) for s in self.scoring]
            per = [_round(s - created) if s is not None else None for s in seen]
            fleet = max(per) if None not in per else None  # type: ignore[type-var]
            if fleet is None:
                superseded += 1
            else:
                delays.append(fleet)
            rows.append({"version": version, "created_s": _round(created - t0),
                         "examples": self._held(version), "offset": meta.get("offset"),
                         "effect_s": per, "fleet_effect_s": fleet})
        everything = next((r for r in rows if r["examples"] >= appended["examples"] > 0), None)
        per_worker = [[r["effect_s"][i] for r in rows if r["effect_s"][i] is not None]
                      for i in range(len(self.ports))]
        return {
            "appended": appended, "learned": learned,
            "all_published_s": everything["created_s"] if everything else None,
            "all_scoring_s": _round(everything["created_s"] + everything["fleet_effect_s"])
            if everything and everything["fleet_effect_s"] is not None else None,
            "publish_to_effect": {
                "versions": len(rows), "timed": len(delays), "superseded": superseded,
                "median_s": _round(statistics.median(delays)) if delays else None,
                "max_s": _round(max(delays)) if delays else None,
                "per_worker_median_s": [_round(statistics.median(d)) if d else None
                                        for d in per_worker],
                "per_worker_max_s": [_round(max(d)) if d else None for d in per_worker],
                "resolution_s": self.poll_s},
            "versions": rows,
            "series": self._series(t0),
        }

    def _series(self, t0: float, step_s: float = 1.0) -> list[list[float]]:
        """[s since t0, appended, learned] about once a second and at the end (for curves)."""
        out, due = [], t0
        for i, (t, appended, learned) in enumerate(self.samples):
            if t >= due or i == len(self.samples) - 1:
                out.append([round(t - t0, 2), appended, learned])
                due = t + step_s
        return out

    def learner_worker(self, pids: Sequence[int]) -> dict[str, Any]:
        """Which worker held the learner lock at the end (its index), and its owner name."""
        raw = self.redis.get(self.keys.model("learner"))
        owner = raw.decode() if raw else None
        pid = int(owner.split(":")[1]) if owner and owner.count(":") >= 2 else None
        return {"owner": owner, "worker": pids.index(pid) if pid in pids else None}

    def counts(self, port: int) -> dict[str, Any]:
        """A worker's final counts: events by outcome, examples appended and learned."""
        m = scrape(port) or {}
        return {**counts(m),
                "examples_appended": {k: total(m, "churnwatch_model_examples", label=k)
                                      for k in ("churn", "active")},
                "examples_learned": {k: total(m, "churnwatch_model_labels", label=k)
                                     for k in ("churn", "active")},
                "examples_repeated": total(m, "churnwatch_model_examples_repeated"),
                # events away from their home partition: forwarded there, or applied here
                "forwarded_events": total(m, "churnwatch_forwarded_events"),
                "away_applied_events": total(m, "churnwatch_away_applied_events"),
                "snapshots_dropped": {got["reason"]: int(v) for name, got, v in m.get(
                    "churnwatch_model_snapshots_dropped", ()) if name.endswith("_total")},
                "scoring_version": scoring_version(m)}
