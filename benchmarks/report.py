"""Small helpers shared by the benchmarks: repeat timing, machine info, JSON reports, tables.

Benchmarks run on a small shared machine, so they report medians (and the best run) over a few
repeats, and ratios measured in the same run; nothing here compares timings to thresholds.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

import orjson
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPORT_DIR = REPO_ROOT / "reports"  # gitignored


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``runs`` repeats of the same work."""

    median_s: float
    min_s: float
    max_s: float
    runs: list[float]

    @classmethod
    def of(cls, runs: Sequence[float]) -> Timing:
        if not runs:
            raise ValueError("no runs")
        return cls(statistics.median(runs), min(runs), max(runs), list(runs))

    def rate(self, units: float) -> dict[str, float]:
        """``units`` per second for the median and the best (fastest) run."""
        return {"median": units / self.median_s if self.median_s > 0 else float("inf"),
                "best": units / self.min_s if self.min_s > 0 else float("inf")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_repeats(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return Timing.of(runs)


async def atime_repeats(fn: Callable[[], Awaitable[Any]], repeats: int = 5,
                        warmup: int = 1) -> Timing:
    """:func:`time_repeats` for a coroutine function."""
    for _ in range(warmup):
        await fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await fn()
        runs.append(time.perf_counter() - t0)
    return Timing.of(runs)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def redis_server_version(binary: str | None = None) -> str | None:
    """``redis-server --version`` of the binary the embedded runtime would use."""
    try:
        if binary is None:
            from churnwatch.dev.embedded import find_redis_server

            binary = find_redis_server()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:  # informational only
        return None


def machine_info(redis_binary: str | None = None, with_redis: bool = True) -> dict[str, Any]:
    """CPU count, load, Python and library versions (and the redis-server version)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "load_avg_1_5_15": load,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "msgspec": _version("msgspec"),
    }
    if with_redis:
        info["redis_server"] = redis_server_version(redis_binary)
    return info


def code_version(paths: Sequence[str] = ()) -> dict[str, Any]:
    """git HEAD, whether ``paths`` differ from it, and a content hash of ``paths`` (so numbers
    can be tied to the code they measured in a working tree that keeps moving)."""
    import hashlib

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except Exception:
            return None

    digest = hashlib.sha256()
    files = []
    for rel in paths:
        target = REPO_ROOT / rel
        for f in sorted(target.rglob("*") if target.is_dir() else [target]):
            if f.is_file() and f.suffix in (".py", ".lua") and "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(REPO_ROOT)).encode())
                digest.update(f.read_bytes())
                files.append(str(f.relative_to(REPO_ROOT)))
    status = git("status", "--porcelain", "--", *paths) if paths else None
    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted": [line for line in (status or "").splitlines() if line],
            "sha256": digest.hexdigest()[:16], "files": len(files)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Timing):
        return value.as_dict()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # JSON has no NaN/inf
    return value


def write_report(name: str, data: dict[str, Any], out_dir: str | os.PathLike[str] | None = None
                 ) -> Path:
    """Write ``data`` to ``<out_dir>/<name>-<UTC timestamp>.json`` (default ``reports/``)."""
    directory = Path(out_dir) if out_dir is not None else DEFAULT_REPORT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{name}-{stamp}-{n}.json"
    path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")
    return path


def finish(name: str, result: dict[str, Any], out_dir: str | os.PathLike[str] | None,
           json_output: bool, summary: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A benchmark's last step: write its report, then print ``result`` as JSON on stdout
    (``json_output``) or its ``summary`` and the report's path; returns ``result`` with
    ``report_path``."""
    path = write_report(name, result, out_dir)
    result["report_path"] = str(path)
    if json_output:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2
                                      | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        summary(result)
        note(f"report: {path}")
    return result


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """Compact number: 151234 → '151k', 2.3e7 → '23.0M'."""
    if value is None or value != value:
        return "n/a"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g}{suffix}{unit}"
    return f"{value:.{digits}g}{unit}"


_console: Console | None = None


def seconds(value: float | None) -> str:
    """``1.23 s``, or ``n/a``."""
    return "n/a" if value is None else f"{value:.2f} s"


def count(value: float | None) -> str:
    """``12,345``, or ``n/a``."""
    return "n/a" if value is None else f"{value:,}"


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(highlight=False, soft_wrap=False, width=max(120, Console().width))
    return _console


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                caption: str | None = None) -> None:
    """A compact rich table (values are str()-ed)."""
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
                  show_edge=False, pad_edge=False, header_style="bold")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(str(x) for x in row))
    console().print(table)


def note(text: str) -> None:
    console().print(text)


def run_async(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]
