"""The import contract ([tool.importlinter] in pyproject.toml): the repository keeps it, and a
forbidden import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("churnwatch", "streams", "alerting", "online_models", "rules", "features",
            "benchmarks", "tests")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(LINT, cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_repository_keeps_its_layers() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _copy(tmp: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "fuzz"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def test_a_core_module_importing_a_domain_package_breaks_the_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    keys = root / "churnwatch" / "core" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport alerting.alert  # noqa: E402,F401\n")
    done = lint(root)
    assert done.returncode != 0
    assert "churnwatch.core.keys -> alerting.alert" in done.stdout


def test_a_test_module_importing_another_breaks_the_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    module = root / "tests" / "test_layers.py"
    module.write_text(module.read_text() + "\nimport tests.test_rules  # noqa: E402,F401\n")
    done = lint(root)
    assert done.returncode != 0
    assert "tests.test_layers -> tests.test_rules" in done.stdout
