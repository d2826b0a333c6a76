"""The scaling benchmark's options and CPU accounting (the runs themselves are manual)."""

from __future__ import annotations

import os

import pytest

from benchmarks.bench_scaling import cpu_seconds, parse_args
from churnwatch.core.errors import ChurnwatchError


def test_options() -> None:
    opts = parse_args(["--workers", "1,3", "--redis", "cluster", "--repeats", "2"])
    assert (opts.workers, opts.redis, opts.repeats, opts.partitions) == ((1, 3), ("cluster",),
                                                                         2, 12)


@pytest.mark.parametrize("argv", [["--workers", "two"], ["--workers", "0"],
                                  ["--redis", "sentinel"], ["--workers", "13"],
                                  ["--repeats", "0"]])
def test_bad_options_say_what_to_use(argv: list[str]) -> None:
    with pytest.raises(ChurnwatchError):
        parse_args(argv)


def test_cpu_seconds_of_this_process() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc")
    sum(i * i for i in range(200_000))
    assert (cpu_seconds([os.getpid()]) or 0) > 0
    assert cpu_seconds([2 ** 22 + 12345]) is None
