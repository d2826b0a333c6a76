"""The shipped Prometheus alert rules (deploy/prometheus/churnwatch-rules.yml): promtool
checks them and the config that loads them, its rule unit tests show each alert firing on the
series that should raise it (tests/prometheus/churnwatch-rules.test.yml), and every churnwatch
metric they query is one a worker exposes; the worker's registry carries the standard process
and garbage-collector series."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from churnwatch.infra.runtime.metrics import Metrics
from tests.support.promql_names import exposed_names, metric_names
from tests.support.promtool import promtool, promtool_problems

ROOT = Path(__file__).parent.parent
RULES = ROOT / "deploy/prometheus/churnwatch-rules.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, timeout=60, text=True)


def test_promtool_checks_the_rules_and_the_config_loading_them(tmp_path: Path) -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    config = _promtool("check", "config", str(ROOT / "deploy/prometheus/prometheus.yml"))
    assert config.returncode == 0 and "1 rule files found" in config.stdout, config.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 100000", "> > 100000"))
    assert _promtool("check", "rules", str(broken)).returncode != 0


def test_each_alert_fires_on_its_series() -> None:
    run = _promtool("test", "rules", str(ROOT / "tests/prometheus/churnwatch-rules.test.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    tested = yaml.safe_load((ROOT / "tests/prometheus/churnwatch-rules.test.yml").read_text())
    fired = {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]
             if t["exp_alerts"]}
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
               for r in g["rules"]}
    assert fired == shipped


def test_rules_query_metrics_the_worker_exposes_with_process_and_gc_series() -> None:
    exposition = generate_latest(Metrics().registry).decode()
    assert promtool_problems(exposition) == []
    exposed = exposed_names(exposition)
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total",
            "python_gc_objects_collected_total", "python_gc_collections_total",
            "python_info"} <= exposed
    queried = {name for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
               for name in metric_names(r["expr"])}
    ours = {n for n in queried if n.startswith("churnwatch_")}
    assert len(ours) >= 6 and ours <= exposed, ours - exposed
    # the rest come from Prometheus itself and redis_exporter
    assert queried - ours == {"up", "redis_memory_used_bytes", "redis_memory_max_bytes"}
