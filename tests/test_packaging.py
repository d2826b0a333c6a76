"""Packaging: the license (an SPDX expression in pyproject and the Apache-2.0 text in
LICENSE), `churnwatch --version`, a `py.typed` marker shipped with every package, and a
changelog in the Keep a Changelog form without commit ids or branch names."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

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
