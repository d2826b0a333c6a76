"""The Kubernetes manifests: valid against the Kubernetes schemas (offline), every manifest in
the kustomization, references resolving, hardened pods, probes and metrics ports pointing at
what the processes serve, the rules ConfigMap equal to the shipped ruleset."""

from __future__ import annotations

import copy
import re

import yaml

from tests.support import deploy_checks as dc
from tests.support import deploy_k8s as kc
from tests.support.deploy_checks import (
    DEPLOY,
    K8S,
    compose,
    deployment,
    k8s,
    manifests,
)

K8S_VERSIONS = ("1.30", "1.37")  # the oldest we support and the newest schema shipped


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    docs = [d for ds in manifests().values() for d in ds]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "Secret",
                                        "PodDisruptionBudget", "ServiceAccount", "Namespace"}
    for version in K8S_VERSIONS:
        errors = [e for d in docs for e in kc.k8s_errors(d, version)]
        assert errors == []


def test_k8s_schema_rejects_a_broken_copy() -> None:
    broken = copy.deepcopy(deployment("churnwatch-worker"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["httpGet"]["pth"] = container["livenessProbe"]["httpGet"].pop("path")
    assert kc.k8s_errors(broken, "1.30")
    broken = copy.deepcopy(deployment("churnwatch-worker"))
    broken["spec"]["replicas"] = "3"
    assert kc.k8s_errors(broken, "1.30")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == set(manifests()) - {"secret.example.yaml"}
    assert all((K8S / r).is_file() for r in listed)


def test_k8s_references_resolve() -> None:
    configmaps = {d["metadata"]["name"] for d in k8s("ConfigMap")}
    secrets = {d["metadata"]["name"]: set(d.get("stringData", {})) for d in k8s("Secret")}
    for d in k8s("Deployment"):
        assert d["spec"]["selector"]["matchLabels"].items() <= \
            d["spec"]["template"]["metadata"]["labels"].items()
        assert kc.unresolved_refs(d, configmaps, secrets) == []
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in k8s("Deployment")]
    for pdb in k8s("PodDisruptionBudget"):
        assert sum(kc.selector_matches(pdb["spec"]["selector"]["matchLabels"], t)
                   for t in templates) == 1
    (service,) = k8s("Service")
    ingest = deployment("churnwatch-ingest")
    assert kc.selector_matches(service["spec"]["selector"],
                               ingest["spec"]["template"]["metadata"]["labels"])
    assert kc.named_port(kc.containers(ingest)[0], service["spec"]["ports"][0]["targetPort"]) \
        == 8080
    broken = copy.deepcopy(deployment("churnwatch-worker"))
    env = next(e for e in kc.containers(broken)[0]["env"]
               if e["name"] == "CHURNWATCH_WEBHOOK_SECRET")
    env["valueFrom"]["secretKeyRef"]["key"] = "webhook-secrt"
    broken["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = "churnwatch-rulez"
    assert kc.unresolved_refs(broken, configmaps, secrets) == [
        "churnwatch-worker: ConfigMap churnwatch-rulez not defined",
        "churnwatch-worker: Secret churnwatch-secrets has no key webhook-secrt"]


def test_k8s_pods_are_hardened() -> None:
    for d in k8s("Deployment"):
        assert kc.security_problems(d) == []
    broken = copy.deepcopy(deployment("churnwatch-worker"))
    del broken["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"]
    assert kc.security_problems(broken) == [
        "churnwatch-worker/worker: readOnlyRootFilesystem must be true"]


def k8s_env(d: dict) -> dict:
    settings = next(c for c in k8s("ConfigMap") if c["metadata"]["name"] == "churnwatch-settings")
    return {**settings["data"], **kc.container_env(kc.containers(d)[0])}


def test_k8s_prometheus_annotations_match_the_metrics_port() -> None:
    worker = deployment("churnwatch-worker")
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    env = k8s_env(worker)
    port = dc.effective_port(env, "metrics_port")
    assert int(annotations["prometheus.io/port"]) == port
    assert kc.named_port(kc.containers(worker)[0], "metrics") == port
    assert dc.bind_host_problems(env, ["metrics_host"], "worker") == []
    ingest = deployment("churnwatch-ingest")
    env = k8s_env(ingest)
    assert int(ingest["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == \
        dc.effective_port(env, "ingest_port")
    assert dc.bind_host_problems(env, ["ingest_host"], "ingest") == []


def test_ingest_probes_point_at_served_paths(tmp_path) -> None:
    routes = dc.ingest_routes(tmp_path)
    assert {"/healthz", "/metrics"} <= routes
    ingest = kc.containers(deployment("churnwatch-ingest"))[0]
    port = dc.effective_port(k8s_env(deployment("churnwatch-ingest")), "ingest_port")
    for probe, (path, probe_port) in kc.probe_paths(ingest).items():
        assert path in routes, probe
        assert kc.named_port(ingest, probe_port) == port
    assert "/livez" not in routes
    healthcheck = " ".join(compose()["services"]["ingest"]["healthcheck"]["test"])
    assert re.search(r"http://127\.0\.0\.1:8080(/\w+)", healthcheck).group(1) in routes


def test_worker_probes_point_at_served_paths() -> None:
    """Fails until the web branch (the worker web page with /healthz and /readyz) merges."""
    worker = kc.containers(deployment("churnwatch-worker"))[0]
    probes = kc.probe_paths(worker)
    assert set(probes) == {"startupProbe", "livenessProbe", "readinessProbe"}
    web_port = int(k8s_env(deployment("churnwatch-worker"))["CHURNWATCH_WEB_PORT"])
    for path, port in probes.values():
        assert kc.named_port(worker, port) == web_port
    healthcheck = " ".join(compose()["services"]["worker"]["healthcheck"]["test"])
    compose_path = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", healthcheck)
    assert int(compose_path.group(1)) == int(
        dc.service_env(compose(), "worker")["CHURNWATCH_WEB_PORT"])
    served = dc.worker_http_paths()
    assert "/livez" not in served
    wanted = {path for path, _ in probes.values()} | {compose_path.group(2)}
    assert wanted <= served, f"the worker serves none of {sorted(wanted - served)}"


def test_route_scan_finds_registered_paths() -> None:
    assert {"/healthz", "/openapi.json", "/metrics"} <= dc.worker_http_paths(exclude=())
    assert "/openapi.json" not in dc.worker_http_paths()  # ingest-only


def test_rules_configmap_is_the_shipped_ruleset(tmp_path) -> None:
    import runpy

    from alerting.playbook import load_playbook
    from rules.ruleset import load_ruleset

    render = runpy.run_path(str(DEPLOY / "render_rules_configmap.py"))["render"]
    assert (K8S / "configmap-rules.yaml").read_text() == render(), \
        "run python deploy/render_rules_configmap.py"
    (configmap,) = [d for d in k8s("ConfigMap") if d["metadata"]["name"] == "churnwatch-rules"]
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
    ruleset = load_ruleset(tmp_path / "rules.toml")
    load_playbook(tmp_path / "playbook.toml").check_segments(ruleset.segment_names)
    env = kc.container_env(kc.containers(deployment("churnwatch-worker"))[0])
    mount = next(m for m in kc.containers(deployment("churnwatch-worker"))[0]["volumeMounts"]
                 if m["name"] == "rules")["mountPath"]
    assert env["CHURNWATCH_RULES_FILE"] == f"{mount}/rules.toml"
    assert env["CHURNWATCH_PLAYBOOK_FILE"] == f"{mount}/playbook.toml"


def test_the_prometheusrule_carries_the_prometheus_rule_groups() -> None:
    """deploy/k8s/prometheusrule.yaml is generated from deploy/prometheus/churnwatch-rules.yml
    (the groups promtool checks and tests), and is a well-formed PrometheusRule."""
    import runpy

    assert dc.OPERATOR_MANIFESTS == {"prometheusrule.yaml"}
    render = runpy.run_path(str(DEPLOY / "render_prometheusrule.py"))["render"]
    text = (K8S / "prometheusrule.yaml").read_text()
    assert text == render(), "run python deploy/render_prometheusrule.py"
    (rule,) = dc.yaml_docs(text)
    groups = yaml.safe_load((DEPLOY / "prometheus" / "churnwatch-rules.yml").read_text())["groups"]
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"} and set(rule["spec"]) == {
        "groups"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rule["metadata"]["name"])
    assert rule["spec"]["groups"] == groups and groups
    for group in rule["spec"]["groups"]:  # the operator's schema: name and rules required
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations",
                              "keep_firing_for"} and r["expr"] and ("alert" in r) != ("record" in r)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "prometheusrule.yaml" not in kustomization["resources"]  # needs the operator's CRD
