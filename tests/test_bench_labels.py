"""Smoke test of the label-burst benchmark (``benchmarks/bench_labels.py``): a tiny burst through
two real workers, the learner's versions published every second. Checks that the report is
consistent (every label appended and learned once, by one learner, a version holding them all
that every worker scores with) and the figures are there; timings are never compared here."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from benchmarks import bench_labels

pytestmark = pytest.mark.integration


def test_bench_labels_tiny(tmp_path: Path) -> None:
    result = bench_labels.main(["--subscribers", "400", "--workers", "2",
                                "--publish-interval-s", "1", "--max-s", "240",
                                "--out-dir", str(tmp_path), "--json"])
    path = Path(result["report_path"])
    assert path.parent == tmp_path and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert data["benchmark"] == "labels" and data["machine"]["cpu_count"]
    feed, run = data["feed"], data["run"]
    assert feed["subscribers"] == feed["labels"] == 400 and 0 < feed["churn_labels"] < 400
    assert run["outcome"] == "complete"
    assert run["profiles"]["messages"] == run["labels_produced"]["messages"] == 400
    assert run["appended"]["examples"] == run["learned"]["examples"] == 400
    workers = run["worker_counts"]
    assert len(workers) == 2
    appended = [sum(w["examples_appended"].values()) for w in workers]
    learned = [sum(w["examples_learned"].values()) for w in workers]
    assert sum(appended) == 400 and sum(w["events_applied"] for w in workers) == 800
    learner = run["learner"]["worker"]
    assert learner in (0, 1) and learned[learner] == 400 and learned[1 - learner] == 0
    assert workers[learner]["examples_learned"]["churn"] == feed["churn_labels"]
    assert sum(w["examples_appended"]["churn"] for w in workers) == feed["churn_labels"]
    assert all(w["examples_repeated"] == 0 for w in workers)
    versions = run["versions"]
    assert versions and versions[-1]["examples"] == 400
    assert all(a["examples"] <= b["examples"] for a, b in itertools.pairwise(versions))
    assert all(w["scoring_version"] == versions[-1]["version"] for w in workers)
    assert run["all_published_s"] == versions[-1]["created_s"]
    assert run["all_scoring_s"] >= run["all_published_s"]
    assert run["learned"]["last_s"] >= run["learned"]["first_s"] >= run["appended"]["first_s"]
    effect = run["publish_to_effect"]
    assert effect["versions"] == len(versions) == effect["timed"] + effect["superseded"]
    assert effect["timed"] >= 1 and 0 <= effect["median_s"] <= effect["max_s"]
    assert len(effect["per_worker_median_s"]) == 2
    assert run["appended"]["per_s"] > 0 and run["learned"]["per_s"] > 0
    assert run["series"][-1][1:] == [400, 400]


def test_options() -> None:
    opts = bench_labels.parse_args(["--workers", "2", "--publish-interval-s", "2"])
    assert (opts.subscribers, opts.workers, opts.publish_interval_s) == (50_000, 2, 2.0)
    with pytest.raises(SystemExit):
        bench_labels.parse_args(["--workers", "3"])
