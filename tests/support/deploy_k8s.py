"""Static checks of the Kubernetes manifests under ``deploy/k8s`` (used by ``test_deploy.py``).

Each check returns a list of problems (empty = fine). Schemas: the strict (unknown fields are
errors) Kubernetes JSON schemas shipped by ``kubernetes-validate``, no cluster needed.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from tests.support.deploy_checks import _SECRET_WORDS


def k8s_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Strict validation (unknown fields are errors) against one Kubernetes version."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "<root>"
        return [f"{name} (k8s {version}): {where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name}: {exc.message}"]
    return []


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def container_env(container: dict[str, Any]) -> dict[str, str | None]:
    """Literal env values (None for values from a Secret/ConfigMap ref)."""
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def security_problems(doc: dict[str, Any]) -> list[str]:
    """The hardening every churnwatch pod must have (restricted Pod Security Standard)."""
    name = doc["metadata"]["name"]
    pod = doc["spec"]["template"]["spec"]
    problems = []
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{name}: pod securityContext.runAsNonRoot must be true")
    if pod.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: pod seccompProfile must be RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        where = f"{name}/{c['name']}"
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities.drop must include ALL")
        limits = c.get("resources", {}).get("limits", {})
        if "memory" not in limits or "memory" not in c.get("resources", {}).get("requests", {}):
            problems.append(f"{where}: memory requests and limits are required")
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{where}: {probe} missing")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if "/tmp" not in mounts:
            problems.append(f"{where}: a writable /tmp volume is needed with a read-only root")
    return problems


def probe_paths(container: dict[str, Any]) -> dict[str, tuple[str, int | str]]:
    """probe name -> (path, port) for the HTTP probes of a container."""
    out = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container.get(probe, {}).get("httpGet")
        if get:
            out[probe] = (get["path"], get["port"])
    return out


def named_port(container: dict[str, Any], port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def secret_refs(doc: dict[str, Any]) -> set[tuple[str, str | None]]:
    """(secret name, key) pairs a workload references (key None for a whole-Secret volume)."""
    refs: set[tuple[str, str | None]] = set()
    pod = doc["spec"]["template"]["spec"]
    for c in pod["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                refs.add((src["secretRef"]["name"], None))
    for v in pod.get("volumes", []):
        if "secret" in v:
            refs.add((v["secret"]["secretName"], None))
    return refs


def configmap_refs(doc: dict[str, Any]) -> set[str]:
    pod = doc["spec"]["template"]["spec"]
    refs = {v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
    for c in pod["containers"]:
        refs |= {s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s}
    return refs


def unresolved_refs(doc: dict[str, Any], configmaps: set[str],
                    secrets: dict[str, set[str]]) -> list[str]:
    """ConfigMaps, Secrets and Secret keys a workload uses that the manifests do not define."""
    name = doc["metadata"]["name"]
    problems = [f"{name}: ConfigMap {c} not defined" for c in sorted(configmap_refs(doc) - configmaps)]
    for secret, key in sorted(secret_refs(doc), key=str):
        if secret not in secrets:
            problems.append(f"{name}: Secret {secret} not in secret.example.yaml")
        elif key is not None and key not in secrets[secret]:
            problems.append(f"{name}: Secret {secret} has no key {key}")
    return problems


def k8s_secret_literals(doc: dict[str, Any]) -> list[str]:
    problems = []
    for c in containers(doc):
        for e in c.get("env", []):
            if any(w in e["name"] for w in _SECRET_WORDS) and "value" in e \
                    and not e["name"].endswith("_FILE"):
                problems.append(f"{doc['metadata']['name']}/{c['name']}: {e['name']} must come "
                                "from a Secret (valueFrom.secretKeyRef)")
    return problems
