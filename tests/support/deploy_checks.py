"""Static checks of the deployment artefacts under ``deploy/`` (used by ``test_deploy.py``).

Each check returns a list of problems (empty = fine), so a test can run it on the shipped
files and on a deliberately broken copy. Nothing here needs Docker or a Kubernetes cluster:
the Compose file is validated against the Compose Specification schema vendored by
``check-jsonschema``. Kubernetes checks are in ``deploy_k8s.py``.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
ENV_NAME = re.compile(r"\bCHURNWATCH_[A-Z0-9][A-Z0-9_]*")
_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --- files -------------------------------------------------------------------------------

def yaml_docs(text: str) -> list[Any]:
    """Every non-empty YAML document of a text."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blanks ignored)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``; raises
    KeyError naming a required variable that ``env`` lacks."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name is None:
            return "$"
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise KeyError(f"${{{name}}} is required ({arg}) but not set in the env file")
        if op in (":-", "-") and missing:
            return arg
        if value is None:
            raise KeyError(f"${{{name}}} has no default and is not set in the env file")
        return value
    return _INTERPOLATION.sub(one, text)


# --- schemas -----------------------------------------------------------------------------

def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema vendored by check-jsonschema."""
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(ref.read_text(encoding="utf-8"))


def compose_errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


# --- settings and commands ---------------------------------------------------------------

def env_names(text: str) -> set[str]:
    return set(ENV_NAME.findall(text))


def unknown_settings(names: Iterable[str]) -> set[str]:
    """Names that ``churnwatch.infra.settings_load.load_settings`` would reject as unknown."""
    from churnwatch.infra import config

    known = set(config.Settings.model_fields) | set(config._OTHER_ENV)
    return {n for n in names if n[len(config.ENV_PREFIX):].lower() not in known}


def setting_default(key: str) -> Any:
    from churnwatch.infra.config import Settings

    return Settings.model_fields[key].default


def cli_commands() -> set[str]:
    """Top-level commands of the ``churnwatch`` CLI."""
    import typer.main

    from churnwatch.cli.main import app

    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def project_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def command_problems(argv: list[str], where: str) -> list[str]:
    """``churnwatch <command> ...`` must name a real CLI command."""
    if not argv or argv[0] not in cli_commands():
        return [f"{where}: {argv[:1]} is not a churnwatch command ({sorted(cli_commands())})"]
    return []


# --- Dockerfile --------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    ins = dockerfile_instructions(text)
    stages = [a for i, a in ins if i == "FROM"]
    for image in stages:
        ref = image.split()[0]
        tag = ref.partition(":")[2]
        if not re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", ref):
            problems.append(f"FROM {ref}: use a pinned python:3.11.<patch>-slim image")
        if tag in ("", "latest"):
            problems.append(f"FROM {ref}: unpinned tag")
    users = [a for i, a in ins if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage must switch to a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        problems.append("USER should be numeric (runAsNonRoot can only verify a numeric uid)")
    entry = [json.loads(a) for i, a in ins if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in ins if i == "CMD"]
    if not entry or entry[-1] != ["churnwatch"] or "churnwatch" not in project_scripts():
        problems.append(f"ENTRYPOINT must be the project script ['churnwatch'], got {entry}")
    if not cmd:
        problems.append("CMD missing (the default churnwatch command)")
    else:
        problems += command_problems(cmd[-1], "Dockerfile CMD")
    for i, args in ins:
        if i == "COPY" and "--from=" not in args:
            for src in shlex.split(args)[:-1]:
                if not (ROOT / src).exists():
                    problems.append(f"COPY {src}: no such path in the repository")
    return problems


def packages_copied(text: str) -> list[str]:
    """Top-level packages that pyproject ships but the Dockerfile does not COPY."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = {shlex.split(a)[0].rstrip("/") for i, a in dockerfile_instructions(text)
              if i == "COPY" and "--from=" not in a}
    return [p.rstrip("*") for p in include if p.rstrip("*") not in copied]


def build_copies(text: str) -> list[tuple[str, str]]:
    """(source, destination) of the build stage's COPY instructions (the image's build context)."""
    out = []
    for i, args in dockerfile_instructions(text):
        if i == "COPY" and "--from=" not in args:
            *sources, dest = shlex.split(args)
            out += [(src, dest) for src in sources]
    return out


def install_problems(text: str, core_lock: str = "requirements/lock-core.txt") -> list[str]:
    """The image installs its dependencies from the hashed core lock only, and churnwatch
    itself without resolving anything (no extras: no demo binaries, plots or test tools)."""
    commands = [c.strip() for i, a in dockerfile_instructions(text) if i == "RUN"
                for c in a.split("&&")]
    installs = [shlex.split(c) for c in commands if re.search(r"\bpip install\b", c)]
    problems = []
    from_lock = [c for c in installs if "--require-hashes" in c and "-r" in c
                 and c[c.index("-r") + 1] == core_lock]
    if not from_lock:
        problems.append(f"no `pip install --require-hashes -r {core_lock}`")
    if core_lock not in {src for src, _ in build_copies(text)}:
        problems.append(f"{core_lock} is not copied into the build stage")
    for argv in installs:
        if argv in from_lock:
            continue
        if "--no-deps" not in argv:
            problems.append(f"`{' '.join(argv)}` resolves dependencies outside the core lock")
        if any("[" in word or word in ("-r", "-c", "--constraint", "--requirement")
               for word in argv):
            problems.append(f"`{' '.join(argv)}`: extras or another requirements file")
    if not any(re.search(r"\bpip check\b", c) for c in commands):
        problems.append("no `pip check` after the install")
    return problems


# --- what the processes serve ------------------------------------------------------------

def ingest_routes(tmp: Path) -> set[str]:
    """GET paths of the real ingest aiohttp application."""
    from churnwatch.infra.config import Settings
    from streams.ingest import create_ingest_app
    from streams.ingest_auth import TokenStore

    tokens = tmp / "tokens.toml"
    tokens.write_text('[tokens]\n"t" = "feed"\n')
    app = create_ingest_app(Settings(), producer=None, tokens=TokenStore(tokens))  # type: ignore[arg-type]
    return {r.resource.canonical for r in app.router.routes()
            if r.method == "GET" and r.resource is not None}


_ROUTE_CALLS = ("get", "add_get", "route", "add_route", "api_route", "add_api_route")


def worker_http_paths(exclude: tuple[str, ...] = ("streams/ingest",)) -> set[str]:
    """URL paths a worker process serves: literal paths given to a route registration
    (``router.add_get("/x", ...)``, ``web.get("/x", ...)``, ``@routes.get("/x")``) in the
    worker's packages (ingest modules excluded), plus /metrics (prometheus_client's server).
    A source scan, because the worker's web app needs a running Faust app to be built."""
    paths = {"/metrics"}
    for package in ("churnwatch", "streams"):
        for file in sorted((ROOT / package).rglob("*.py")):
            if file.relative_to(ROOT).as_posix().startswith(exclude):
                continue
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                first = node.args[0]
                if (name in _ROUTE_CALLS and isinstance(first, ast.Constant)
                        and isinstance(first.value, str) and first.value.startswith("/")):
                    paths.add(first.value)
    return paths


# --- monitoring and secrets --------------------------------------------------------------

def bind_host_problems(env: dict[str, str | None], keys: Iterable[str], where: str) -> list[str]:
    """A server inside a container must not bind loopback (the defaults do)."""
    problems = []
    for key in keys:
        name = f"CHURNWATCH_{key.upper()}"
        value = env[name] if name in env else setting_default(key)
        if value in _LOOPBACK:
            problems.append(f"{where}: {key} = {value!r} is unreachable from outside the "
                            "container; set CHURNWATCH_" + key.upper() + "=0.0.0.0")
    return problems


def service_env(compose: dict[str, Any], service: str) -> dict[str, str | None]:
    env = compose["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def effective_port(env: dict[str, str | None], key: str) -> int:
    value = env.get(f"CHURNWATCH_{key.upper()}")
    return int(value) if value is not None else int(setting_default(key))


def prometheus_problems(prometheus: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """The scrape jobs must reach the ports the worker and ingest actually serve."""
    jobs = {j["job_name"]: j for j in prometheus.get("scrape_configs", [])}
    problems = []
    worker = jobs.get("churnwatch-worker", {})
    want = effective_port(service_env(compose, "worker"), "metrics_port")
    sd = worker.get("dns_sd_configs", [])
    if not sd or any(c.get("port") != want or "worker" not in c.get("names", []) for c in sd):
        problems.append(f"churnwatch-worker must discover service 'worker' on port {want}")
    ingest = jobs.get("churnwatch-ingest", {})
    want_ingest = f"ingest:{effective_port(service_env(compose, 'ingest'), 'ingest_port')}"
    targets = [t for c in ingest.get("static_configs", []) for t in c.get("targets", [])]
    if targets != [want_ingest]:
        problems.append(f"churnwatch-ingest must scrape {want_ingest}, not {targets}")
    return problems


_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "REDIS_URL", "KAFKA_USERNAME")


def compose_secret_literals(raw_compose: dict[str, Any]) -> list[str]:
    """Secret-bearing variables in the (uninterpolated) Compose file must come from the env
    file (${...}) or be empty, never a literal."""
    problems = []
    for name, service in raw_compose["services"].items():
        env = service.get("environment", {}) or {}
        for key, value in env.items():
            if any(w in key for w in _SECRET_WORDS) and value not in (None, "") \
                    and "${" not in str(value) and not key.endswith("_FILE"):
                problems.append(f"{name}: {key} is a literal; take it from deploy/.env")
    return problems


# --- the shipped files, parsed -----------------------------------------------------------
def compose_text() -> str:
    return (DEPLOY / "docker-compose.yml").read_text()


def env_example() -> dict[str, str]:
    return read_env_file(DEPLOY / ".env.example")


def compose() -> dict:
    return yaml.safe_load(interpolate(compose_text(), env_example()))


# manifests of custom resources (kubernetes-validate has no schema for them) that are not in
# the kustomization (a cluster without their operator lacks the kind)
OPERATOR_MANIFESTS = frozenset({"prometheusrule.yaml"})


def manifests() -> dict[str, list[dict]]:
    """The core Kubernetes manifests of deploy/k8s (custom resources apart)."""
    return {p.name: yaml_docs(p.read_text()) for p in sorted(K8S.glob("*.yaml"))
            if p.name != "kustomization.yaml" and p.name not in OPERATOR_MANIFESTS}


def k8s(kind: str) -> list[dict]:
    return [d for docs in manifests().values() for d in docs if d["kind"] == kind]


def deployment(name: str) -> dict:
    return next(d for d in k8s("Deployment") if d["metadata"]["name"] == name)
