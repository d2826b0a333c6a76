"""A worker compiles its kernels before it takes partitions: none while it processes.

A kernel compiled on first use holds the interpreter for its compile time (hundreds of ms on
a cold cache): the event loop, the consumer thread and the batches' deliveries all wait. The
check runs in a fresh interpreter (this one has compiled everything other tests used): once
the worker's pipeline is built, a feed through it and through the replay must add no
compiled signature to any kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_kernel_is_compiled_after_the_warm_up(redis_url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.support.kernels_after_warm_up",
                           redis_url], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    late = json.loads(done.stdout.strip().splitlines()[-1])
    assert late == {}, f"compiled after the warm-up (add them to warm_up_kernels): {late}"
